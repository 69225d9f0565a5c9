"""The KIT-19 evaluation protocol: task specs, metrics, reference predictors, reports, validation loss.

lm-evaluation-harness is the engine (prompts, requests, log-likelihoods); this package turns its
per-item log-likelihoods into the protocol's metrics with one metric code for the model and the
reference predictors, and renders the side-by-side report.
"""
