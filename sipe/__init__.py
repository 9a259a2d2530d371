"""sipe-pipeline: Self-supervised Image-specific Prototype Exploration (SIPE, CVPR 2022).

``sipe.ipe`` holds the paper's math, ``sipe.models`` the networks, ``sipe.data`` the datasets,
``sipe.refine`` the pseudo-label refinement, ``sipe.stages`` one module per pipeline stage, and
``sipe.cli`` the ``sipe <stage>`` commands (docs/architecture.md).
"""

__version__ = "0.1.0"
