"""sipe-pipeline: Self-supervised Image-specific Prototype Exploration (SIPE, CVPR 2022).

The library is layered as ``sipe.data`` (datasets), ``sipe.metrics``, ``sipe.viz`` and, in
later phases, ``sipe.ipe`` / ``sipe.models`` / ``sipe.refine``; ``sipe.cli`` exposes one
command per pipeline stage.
"""

__version__ = "0.1.0"
