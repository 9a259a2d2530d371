"""Datasets: the prepared-dataset manifest, readers/preparation for VOC 2012 + SBD and COCO 2014,
the embedded synthetic dataset, and validation."""
