"""sipe-pipeline: Self-supervised Image-specific Prototype Exploration (SIPE, CVPR 2022).

``sipe.ipe`` holds the paper's math, ``sipe.models`` the networks, ``sipe.data`` the datasets,
``sipe.refine`` the pseudo-label refinement, ``sipe.stages`` one module per pipeline stage, and
``sipe.cli`` the ``sipe <stage>`` commands (docs/architecture.md).
"""

__version__ = "0.1.0"


def load(path, device=None, data=None):
    """The model of any of the pipeline's checkpoints: :func:`sipe.predict.load` (README, "Use a trained model")."""
    import importlib

    # importlib, not an import statement: sipe/sources.py would otherwise count sipe.predict (and all it
    # imports) as code of every stage, since every stage imports this package
    return importlib.import_module("sipe.predict").load(path, device=device, data=data)
