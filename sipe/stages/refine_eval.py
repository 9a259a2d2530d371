"""Scoring refined label maps on the ``train`` split (docs/method.md E, F.5 step 5).

``eval-labels`` reads ``<labels>/<id>.png`` for every train id and writes, in its output folder,
``summary.json`` (DVC metrics) and ``per_class.csv``. All scores are fractions in [0, 1], like
every summary of the pipeline (``sipe.metrics``):

* ``mIoU`` and the other keys of :data:`sipe.metrics.SUMMARY_KEYS`, a predicted 255 counted as
  background: IRN's ``eval_sem_seg`` protocol, the one behind the paper's "+dCRF" 64.7 (docs/method.md E);
* ``coverage``: the fraction of scored pixels (GT not 255) that carry a label other than 255;
* ``confident_mIoU``: mIoU over those labelled pixels only (SIPE's own eval_sem_seg, optimistic);
* ``fg_precision`` / ``bg_precision``: of the pixels labelled with a foreground class (resp. 0),
  the fraction whose GT is that class (resp. background).

For maps without 255 (CRF and random-walk labels) coverage is 1 and confident_mIoU equals mIoU.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from sipe.data.manifest import DatasetManifest
from sipe.errors import SipeError, first_offenders
from sipe.io import IGNORE_INDEX, atomic_path, check_complete, read_label_of_size, read_mask, write_json
from sipe.metrics import ConfusionMatrix, per_class_table, summary
from sipe.stages.refine import label_path

log = logging.getLogger(__name__)


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def eval_labels(data: Path, labels_dir: Path, out_dir: Path, role: str = "train") -> dict:
    """Score ``labels_dir/<id>.png`` against the GT of split ``role``; write ``summary.json`` and
    ``per_class.csv`` into ``out_dir``; return the summary."""
    manifest = DatasetManifest.load(data)
    ids = manifest.ids(role)
    check_complete(labels_dir)
    missing = [i for i in ids if not label_path(labels_dir, i).is_file()]
    if missing:
        raise SipeError(f"{labels_dir}: no label PNG for {len(missing)} of {len(ids)} {role} ids: "
                        f"{first_offenders(missing)}")
    c = manifest.num_classes
    as_background = ConfusionMatrix(c, IGNORE_INDEX, pred_ignore="background")
    confident = ConfusionMatrix(c, IGNORE_INDEX, pred_ignore="skip")
    for image_id in ids:
        mask_file = manifest.mask_path(role, image_id)
        gt = read_mask(mask_file)
        labels_file = label_path(labels_dir, image_id)
        pred = read_label_of_size(labels_file, gt.shape, mask_file)
        as_background.update(gt, pred, where=str(labels_file))
        confident.update(gt, pred, where=str(labels_file))
    scores = as_background.scores(manifest.classes)
    if scores["num_pixels"] == 0:
        raise SipeError(f"{manifest.mask_path(role, ids[0]).parent}: no GT pixel to score in split {role!r}")
    sure = confident.matrix
    confident_miou = confident.scores(manifest.classes)["mIoU"]
    result = {**summary(scores),
              "coverage": _ratio(sure.sum(), scores["num_pixels"]),
              "confident_mIoU": None if np.isnan(confident_miou) else confident_miou,
              "fg_precision": _ratio(np.trace(sure[1:, 1:]), sure[:, 1:].sum()),
              "bg_precision": _ratio(sure[0, 0], sure[:, 0].sum())}
    out_dir = Path(out_dir)
    with atomic_path(out_dir / "per_class.csv") as tmp:
        per_class_table(scores).to_csv(tmp, index=False)
    write_json(out_dir / "summary.json", result)
    log.info("eval-labels %s on %s (%d images): mIoU %.4f, coverage %.4f, confident mIoU %s", labels_dir, role,
             len(ids), result["mIoU"], result["coverage"], result["confident_mIoU"])
    return result
