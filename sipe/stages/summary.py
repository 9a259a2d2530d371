"""The results summary: the paper's pipeline rows side by side (paper Tab. 2–3), ours beside the paper's.

Rows, each from one evaluation summary JSON of the DAG (missing inputs leave their row out):
localisation maps (IS-CAM, train), + denseCRF (train), pseudo labels (train), DeepLabV2 on val
(MSC, and MSC + denseCRF). For VOC and COCO the reported numbers stand beside ours, with their
source; where the reference reports none the cell is empty and the note says what is known.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sipe.stages.refine_eval import PAPER_VOC as PAPER_REFINE_VOC
from sipe.stages.tables import PAPER_TAB4_VOC, read_summary

# (row key, label, split, key in the summary JSON)
ROWS = (
    ("localisation", "Localisation maps (IS-CAM)", "train", "is_cam_mIoU"),
    ("crf", "+ denseCRF", "train", "mIoU"),
    ("pseudo", "Pseudo labels (DeepLab's training labels)", "train", "mIoU"),
    ("deeplab", "DeepLabV2, MSC", "val", "mIoU"),
    ("deeplab_crf", "DeepLabV2, MSC + denseCRF", "val", "mIoU"),
)

# Reported numbers (mIoU %) and where they come from (the paper's Tab. 1-3; SPEC D, E, G.5).
PAPER = {
    "voc": {
        "localisation": (PAPER_TAB4_VOC[("is_cam", "sipe")], "paper Tab. 1 / Tab. 4"),
        "crf": (PAPER_REFINE_VOC["crf"], "paper Tab. 1; IR-label fg map, pred 255 = background (author, issue #8)"),
        "pseudo": (None, "not in the paper; about 68 reproduced by a user (issue #6)"),
        "deeplab": (None, "not reported separately"),
        "deeplab_crf": (68.8, "paper Tab. 2, ResNet-101 (test 69.7); CRF and MSC not stated"),
    },
    "coco": {
        "localisation": (None, "not in the paper; 34.4 / 35.1 in the authors' logs"),
        "crf": (None, "not reported"),
        "pseudo": (None, "not reported (COCO pseudo labels are the IR labels)"),
        "deeplab": (None, "not reported separately"),
        "deeplab_crf": (40.6, "paper Tab. 3, ResNet-101; CRF and MSC not stated"),
    },
}


def summary_table(summaries: dict[str, Path | None], dataset: str) -> pd.DataFrame:
    """One row per ``ROWS`` entry whose summary file is given (``summaries[row key]``): method, split and
    our mIoU in %; for VOC and COCO also ``paper_mIoU`` and ``paper_note``."""
    unknown = sorted(set(summaries) - {key for key, *_ in ROWS})
    if unknown:
        raise ValueError(f"unknown summary rows: {', '.join(unknown)}")
    paper = PAPER.get(dataset)
    rows = []
    for key, label, split, field in ROWS:
        path = summaries.get(key)
        if path is None:
            continue
        value = read_summary(Path(path)).get(field)
        row = {"method": label, "split": split, "mIoU": None if value is None else round(100 * value, 2)}
        if paper is not None:
            row["paper_mIoU"], row["paper_note"] = paper[key]
        rows.append(row)
    return pd.DataFrame(rows)
