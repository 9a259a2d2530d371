"""Segmentation scores: confusion matrix, per-class IoU / FP / FN, mIoU and the deeplab-pytorch extras.

One confusion matrix serves every evaluation of the pipeline: localisation maps (docs/method.md D, eval_cam),
CRF'd / IR labels (docs/method.md E, "+dCRF"), pseudo labels (docs/method.md F.5 step 5) and DeepLab predictions
(docs/method.md G.3). Rows are ground truth, columns are predictions. GT pixels equal to ``ignore_index``
(255) never count. What a *predicted* 255 means is the one protocol choice that differs between
the reference scripts (docs/method.md E, H.1 item 11), so it is an explicit argument, ``pred_ignore``:

* ``"background"`` (default): a predicted 255 counts as class 0. This is IRN's ``eval_sem_seg``
  (``cls_labels[cls_labels == 255] = 0``) and the protocol behind the paper's "+dCRF" number.
* ``"skip"``: the pixel is dropped, as SIPE's ``eval_sem_seg`` does implicitly through its
  ``[:21, :21]`` slice of the chainercv matrix. Optimistic: uncertain pixels cannot be wrong.
* ``"error"``: a predicted 255 raises, for maps that must never hold one (docs/method.md F.5 step 4).

All scores are fractions in [0, 1], never percentages.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Sequence

import numpy as np
import pandas as pd

from sipe.errors import SipeError, first_offenders
from sipe.io import IGNORE_INDEX, atomic_path, write_json

PRED_IGNORE_MODES = ("background", "skip", "error")

# The scalar keys of the summary JSON (DVC metrics), in the order they are written.
SUMMARY_KEYS = (
    "mIoU",
    "pixel_acc",
    "mean_acc",
    "fw_iou",
    "mean_fp",
    "mean_fn",
    "num_classes_with_gt",
    "num_pixels",
    "num_images",
)

# The per-class columns of :func:`per_class_table` (and of the CSV).
TABLE_COLUMNS = ("class_id", "name", "iou", "fp", "fn", "accuracy", "gt_pixels", "pred_pixels", "tp_pixels")


class MetricInputError(SipeError, ValueError):
    """A label map or confusion matrix that cannot be scored (bad value, shape or dtype).

    A ``ValueError`` for library callers and a :class:`SipeError` so the CLI reports it as one line.
    """


def _check_config(num_classes: int, ignore_index: int | None, pred_ignore: str) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise MetricInputError(f"num_classes must be a positive integer, got {num_classes!r}")
    if ignore_index is not None:
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
            raise MetricInputError(f"ignore_index must be an integer or None, got {ignore_index!r}")
        if 0 <= ignore_index < num_classes:
            raise MetricInputError(
                f"ignore_index {ignore_index} is also a class index (num_classes={num_classes})"
            )
    if pred_ignore not in PRED_IGNORE_MODES:
        raise MetricInputError(f"pred_ignore must be one of {', '.join(PRED_IGNORE_MODES)}; got {pred_ignore!r}")


def _as_labels(array, what: str, where: str) -> np.ndarray:
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.integer):
        raise MetricInputError(f"{where}{what} label map must have an integer dtype, got {array.dtype}")
    return array.reshape(-1).astype(np.int64, copy=False)


def _check_range(labels: np.ndarray, ignored: np.ndarray | None, c: int, ignore_index, what: str) -> None:
    """Raise naming the values of ``labels`` outside 0..c-1 that are not the ignore value."""
    bad = (labels < 0) | (labels >= c)
    if ignored is not None:
        bad &= ~ignored
    if bad.any():
        values = np.unique(labels[bad])
        raise MetricInputError(f"{what} values outside 0..{c - 1} (ignore={ignore_index}): "
                               f"{first_offenders(values.tolist())}")


def confusion_matrix(
    gt,
    pred,
    num_classes: int,
    ignore_index: int | None = IGNORE_INDEX,
    pred_ignore: str = "background",
    *,
    where: str | None = None,
) -> np.ndarray:
    """Confusion matrix ``[C, C]`` (int64, rows = GT, columns = prediction) of one pair of label maps.

    Computed with a single ``np.bincount`` over ``gt * C + pred``. GT pixels equal to
    ``ignore_index`` are skipped (docs/method.md D: the ``[:21, :21]`` slice; docs/method.md G.3: only GT in [0, C)).
    A predicted ``ignore_index`` is handled per ``pred_ignore`` (module docstring; docs/method.md E, H.1 item 11).
    ``ignore_index=None`` means no value is special. Any other GT or prediction value outside
    ``0..C-1``, mismatched shapes or a non-integer dtype raise :class:`MetricInputError` (a
    ``ValueError``) naming the bad values; ``where`` (e.g. the image id) prefixes the message.
    """
    _check_config(num_classes, ignore_index, pred_ignore)
    prefix = f"{where}: " if where else ""
    gt_arr, pred_arr = np.asarray(gt), np.asarray(pred)
    if gt_arr.shape != pred_arr.shape:
        raise MetricInputError(f"{prefix}GT shape {gt_arr.shape} != prediction shape {pred_arr.shape}")
    g = _as_labels(gt_arr, "GT", prefix)
    p = _as_labels(pred_arr, "prediction", prefix)
    c = int(num_classes)

    if ignore_index is None:
        g_ign = p_ign = None
    else:
        g_ign = g == ignore_index
        p_ign = p == ignore_index

    _check_range(g, g_ign, c, ignore_index, f"{prefix}GT")
    _check_range(p, p_ign, c, ignore_index, f"{prefix}prediction")

    keep = None if g_ign is None or not g_ign.any() else ~g_ign
    if p_ign is not None and p_ign.any():
        if pred_ignore == "error":
            raise MetricInputError(
                f"{prefix}prediction holds {int(p_ign.sum())} pixels of {ignore_index} (ignore) "
                f"and pred_ignore='error'"
            )
        if pred_ignore == "background":
            p = np.where(p_ign, 0, p)
        else:  # "skip"
            keep = ~p_ign if keep is None else keep & ~p_ign
    if keep is not None:
        g, p = g[keep], p[keep]
    counts = np.bincount(g * c + p, minlength=c * c)
    return counts.reshape(c, c).astype(np.int64, copy=False)


class ConfusionMatrix:
    """Streaming confusion-matrix accumulator: ``update`` per image, ``+`` / ``merge`` per shard.

    ``matrix`` is the running ``[C, C]`` int64 sum (a copy), ``num_images`` counts ``update`` calls.
    Two accumulators add only if they share ``num_classes``, ``ignore_index`` and ``pred_ignore``;
    ``sum(accumulators)`` works. ``save``/``load`` keep a shard's partial sum as a pickle-free
    ``.npz`` for a later gather step.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = IGNORE_INDEX, pred_ignore: str = "background"):
        _check_config(num_classes, ignore_index, pred_ignore)
        self.num_classes = int(num_classes)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.pred_ignore = pred_ignore
        self.num_images = 0
        self._matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    @property
    def matrix(self) -> np.ndarray:
        return self._matrix.copy()

    @classmethod
    def from_matrix(
        cls,
        matrix,
        ignore_index: int | None = IGNORE_INDEX,
        pred_ignore: str = "background",
        *,
        num_images: int = 0,
    ) -> ConfusionMatrix:
        """An accumulator that starts from an existing matrix (e.g. one shard's saved sum)."""
        matrix = _as_confusion(matrix)
        acc = cls(matrix.shape[0], ignore_index, pred_ignore)
        acc._matrix += matrix
        acc.num_images = int(num_images)
        return acc

    def update(self, gt, pred, *, where: str | None = None) -> ConfusionMatrix:
        """Add one image pair (see :func:`confusion_matrix`); returns ``self``."""
        self._matrix += confusion_matrix(
            gt, pred, self.num_classes, self.ignore_index, self.pred_ignore, where=where
        )
        self.num_images += 1
        return self

    def _check_compatible(self, other) -> None:
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"cannot merge ConfusionMatrix with {type(other).__name__}")
        mine = (self.num_classes, self.ignore_index, self.pred_ignore)
        theirs = (other.num_classes, other.ignore_index, other.pred_ignore)
        if mine != theirs:
            raise MetricInputError(
                f"cannot merge confusion matrices with different (num_classes, ignore_index, pred_ignore): "
                f"{mine} vs {theirs}"
            )

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add ``other``'s counts and image count into ``self`` (in place); returns ``self``."""
        self._check_compatible(other)
        self._matrix += other._matrix
        self.num_images += other.num_images
        return self

    def copy(self) -> ConfusionMatrix:
        return ConfusionMatrix.from_matrix(
            self._matrix, self.ignore_index, self.pred_ignore, num_images=self.num_images
        )

    def __add__(self, other):
        if not isinstance(other, ConfusionMatrix):
            return NotImplemented
        return self.copy().merge(other)

    def __radd__(self, other):
        if isinstance(other, int) and other == 0:  # the start value of sum()
            return self.copy()
        return NotImplemented

    def __iadd__(self, other):
        if not isinstance(other, ConfusionMatrix):
            return NotImplemented
        return self.merge(other)

    def __repr__(self) -> str:
        return (
            f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
            f"pred_ignore={self.pred_ignore!r}, num_images={self.num_images}, pixels={int(self._matrix.sum())})"
        )

    def scores(self, class_names: Sequence[str]) -> dict:
        """:func:`segmentation_scores` of the running matrix, with ``num_images`` filled in."""
        return segmentation_scores(self._matrix, class_names, num_images=self.num_images)

    def save(self, path: str | os.PathLike) -> None:
        """Write the partial sum as ``.npz`` (no pickle), atomically."""
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                matrix=self._matrix,
                num_images=np.int64(self.num_images),
                ignore_index=np.int64(-1 if self.ignore_index is None else self.ignore_index),
                has_ignore=np.bool_(self.ignore_index is not None),
                pred_ignore=np.str_(self.pred_ignore),
            )

    @classmethod
    def load(cls, path: str | os.PathLike) -> ConfusionMatrix:
        """Read a partial sum written by :meth:`save`."""
        try:
            with np.load(path, allow_pickle=False) as data:
                ignore = int(data["ignore_index"]) if bool(data["has_ignore"]) else None
                return cls.from_matrix(
                    data["matrix"], ignore, str(data["pred_ignore"]), num_images=int(data["num_images"])
                )
        except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            if isinstance(exc, MetricInputError):
                raise MetricInputError(f"{path}: {exc}") from exc
            raise MetricInputError(f"{path}: not a confusion-matrix file ({exc})") from exc


def _as_confusion(conf) -> np.ndarray:
    conf = np.asarray(conf)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1] or conf.shape[0] < 1:
        raise MetricInputError(f"confusion matrix must be square [C, C], got shape {conf.shape}")
    if np.issubdtype(conf.dtype, np.floating):
        if not np.all(np.isfinite(conf)) or np.any(conf != np.round(conf)):
            raise MetricInputError("confusion matrix holds non-integer counts")
    elif not np.issubdtype(conf.dtype, np.integer):
        raise MetricInputError(f"confusion matrix must hold integer counts, got {conf.dtype}")
    if np.any(conf < 0):
        raise MetricInputError("confusion matrix holds negative counts")
    return conf.astype(np.int64)


def _ratio(num: np.ndarray, den: np.ndarray, valid: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan, dtype=np.float64)
    np.divide(num, den, out=out, where=valid)
    return out


def _mean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


def segmentation_scores(conf, class_names: Sequence[str], *, num_images: int | None = None) -> dict:
    """All scores of one confusion matrix (rows = GT), as plain Python floats / ints / lists.

    Per class c, with TP = conf[c, c], GT_c = row sum, Pred_c = column sum, U_c = GT_c + Pred_c − TP:

    * ``iou`` = TP / U (docs/method.md D, G.3); ``accuracy`` = TP / GT_c;
    * ``fp`` = (Pred_c − TP) / U and ``fn`` = (GT_c − TP) / U, IRN's ``eval_sem_seg`` convention,
      so that IoU + FP + FN = 1 for every scored class.

    **Classes without GT pixels get NaN in every per-class rate, even when predicted,** and are
    left out of every mean. ``mIoU``, ``mean_acc``, ``mean_fp`` and ``mean_fn`` are means over
    the classes with GT (docs/method.md G.3 "nanmean over classes with GT pixels"). The reference scripts
    (chainercv in SIPE's eval_cam/eval_sem_seg, and ``np.nanmean(iu)`` in the upstream
    deeplab-pytorch ``metric.scores``) exclude only 0/0 classes, so a class that is predicted
    but absent from the GT counts there as IoU 0. Both agree whenever every class occurs in the
    GT (full VOC train / val); they differ on subsets. IRN also averages FP/FN over foreground
    classes only; here background is included like every other class with GT.

    Overall: ``pixel_acc`` = trace / total, ``fw_iou`` = Σ_c (GT_c / total) · IoU_c over classes
    with GT (deeplab-pytorch "FreqW Acc"). All are fractions in [0, 1]; NaN where undefined
    (e.g. an empty matrix). ``num_images`` is carried through for the summary JSON.
    """
    conf = _as_confusion(conf)
    names = [str(n) for n in class_names]
    if len(names) != conf.shape[0]:
        raise MetricInputError(f"{len(names)} class names for a {conf.shape[0]}-class confusion matrix")

    tp = np.diag(conf)
    gt = conf.sum(axis=1)
    pred = conf.sum(axis=0)
    union = gt + pred - tp
    has_gt = gt > 0
    total = int(conf.sum())

    iou = _ratio(tp, union, has_gt)
    fp = _ratio(pred - tp, union, has_gt)
    fn = _ratio(gt - tp, union, has_gt)
    acc = _ratio(tp, gt, has_gt)
    fw_iou = float(np.sum(gt[has_gt] / total * iou[has_gt])) if total else math.nan

    return {
        "class_names": names,
        "iou": iou.tolist(),
        "fp": fp.tolist(),
        "fn": fn.tolist(),
        "accuracy": acc.tolist(),
        "gt_pixels": [int(v) for v in gt],
        "pred_pixels": [int(v) for v in pred],
        "tp_pixels": [int(v) for v in tp],
        "mIoU": _mean(iou),
        "pixel_acc": float(tp.sum() / total) if total else math.nan,
        "mean_acc": _mean(acc),
        "fw_iou": fw_iou,
        "mean_fp": _mean(fp),
        "mean_fn": _mean(fn),
        "num_classes_with_gt": int(has_gt.sum()),
        "num_pixels": total,
        "num_images": None if num_images is None else int(num_images),
    }


def per_class_table(scores: dict) -> pd.DataFrame:
    """One row per class: class_id, name, iou, fp, fn, accuracy, gt/pred/tp pixel counts (NaN = no GT)."""
    names = scores["class_names"]
    table = pd.DataFrame(
        {
            "class_id": np.arange(len(names), dtype=np.int64),
            "name": names,
            "iou": np.asarray(scores["iou"], dtype=np.float64),
            "fp": np.asarray(scores["fp"], dtype=np.float64),
            "fn": np.asarray(scores["fn"], dtype=np.float64),
            "accuracy": np.asarray(scores["accuracy"], dtype=np.float64),
            "gt_pixels": np.asarray(scores["gt_pixels"], dtype=np.int64),
            "pred_pixels": np.asarray(scores["pred_pixels"], dtype=np.int64),
            "tp_pixels": np.asarray(scores["tp_pixels"], dtype=np.int64),
        }
    )
    return table[list(TABLE_COLUMNS)]


def _json_scalar(value):
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def summary(scores: dict) -> dict:
    """The scalar summary (``SUMMARY_KEYS``) with NaN → ``None``; ``num_images`` only when known."""
    out = {}
    for key in SUMMARY_KEYS:
        value = scores.get(key)
        if key == "num_images" and value is None:
            continue
        out[key] = _json_scalar(value)
    return out


def write_scores(scores: dict, json_path: str | os.PathLike, csv_path: str | os.PathLike) -> None:
    """Write the summary JSON (DVC metrics: scalar keys only, fractions in [0, 1], NaN → null) and
    the per-class CSV (NaN → empty cell), each atomically (docs/architecture.md, "Reliability rules")."""
    data = summary(scores)
    json.dumps(data, allow_nan=False)  # fail here, before anything is written, if a NaN slipped through
    table = per_class_table(scores)
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    write_json(json_path, data)
