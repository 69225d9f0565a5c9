"""MLflow: tracking set-up, model versions, the promotion policy and the registry's aliases.

- :mod:`.tracking`: the one place that knows the tracking URI, the experiment and the timeouts.
- :mod:`.versions`: the trained model logged by path and a registered version with its lineage.
- :mod:`.modelcard`: the version's lineage (code, data, params, pipeline run) as a model card.
- :mod:`.policy`: the promotion policy (YAML) and its gate, every number compared.
- :mod:`.aliases`: challenger / champion / previous, and the decisions (and rollbacks) that move them.
- :mod:`.lock`: a compare-and-set lock on the registry itself, so two promotions never interleave.
"""
