"""The Kubeflow Pipelines glue: what ``components/stages.py``'s component bodies call.

Component bodies stay a few lines; the work of mapping KFP artifacts onto the stage functions
lives here, where it is tested without kfp.

- :mod:`.steps`: one function per component: params JSON and artifact paths in, a stage run.
- :mod:`.slices`: each stage's params slice and the run's fingerprint (KFP's cache keys).
- :mod:`.artifacts`: metrics, report pages, model files and the confusion matrix as KFP artifacts.
"""
