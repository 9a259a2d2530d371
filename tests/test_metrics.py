"""Tests for sipe.metrics: confusion matrix, scores, accumulator and the written JSON/CSV (docs/method.md D, E, G.3, H.1 item 11)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from sipe.errors import SipeError
from sipe.metrics import (
    PRED_IGNORE_MODES,
    SUMMARY_KEYS,
    TABLE_COLUMNS,
    ConfusionMatrix,
    MetricInputError,
    confusion_matrix,
    per_class_table,
    segmentation_scores,
    summary,
    write_scores,
)

IGN = 255


def names(c: int) -> list[str]:
    return ["background"] + [f"class{i}" for i in range(1, c)]


# ----------------------------------------------------------------------------------------------
# Independent references
# ----------------------------------------------------------------------------------------------


def naive_confusion(gt, pred, c, mode):
    """Per-class boolean masks, one (i, j) cell at a time: no bincount, no index arithmetic."""
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    valid = gt != IGN
    if mode == "background":
        pred = np.where(pred == IGN, 0, pred)
    elif mode == "skip":
        valid = valid & (pred != IGN)
    conf = np.zeros((c, c), dtype=np.int64)
    for i in range(c):
        for j in range(c):
            conf[i, j] = int(np.count_nonzero((gt == i) & (pred == j) & valid))
    return conf


def chainercv_sliced(gt, pred, c):
    """SIPE's eval: a confusion grown to 256x256 by the 255s, then sliced [:C, :C] (docs/method.md D)."""
    g = np.asarray(gt, dtype=np.int64).ravel()
    p = np.asarray(pred, dtype=np.int64).ravel()
    return np.bincount(256 * g + p, minlength=256 * 256).reshape(256, 256)[:c, :c]


def naive_scores(conf):
    """Per-class loops in plain Python floats; classes without GT are None."""
    c = len(conf)
    total = sum(int(conf[i][j]) for i in range(c) for j in range(c))
    out = {"iou": [], "fp": [], "fn": [], "acc": []}
    fw = 0.0
    for k in range(c):
        tp = int(conf[k][k])
        g = sum(int(conf[k][j]) for j in range(c))
        p = sum(int(conf[i][k]) for i in range(c))
        if g == 0:
            for key in out:
                out[key].append(None)
            continue
        u = g + p - tp
        out["iou"].append(tp / u)
        out["fp"].append((p - tp) / u)
        out["fn"].append((g - tp) / u)
        out["acc"].append(tp / g)
        fw += g / total * tp / u

    def mean(xs):
        xs = [x for x in xs if x is not None]
        return sum(xs) / len(xs)

    trace = sum(int(conf[k][k]) for k in range(c))
    return {
        **out,
        "mIoU": mean(out["iou"]),
        "mean_fp": mean(out["fp"]),
        "mean_fn": mean(out["fn"]),
        "mean_acc": mean(out["acc"]),
        "pixel_acc": trace / total,
        "fw_iou": fw,
    }


def random_pair(rng, c, shape, p_ignore_gt=0.1, p_ignore_pred=0.1):
    gt = rng.integers(0, c, size=shape).astype(np.uint8)
    pred = gt.copy()
    flip = rng.random(shape) < 0.4  # mostly right, so IoUs are not all tiny
    pred[flip] = rng.integers(0, c, size=int(flip.sum()))
    gt[rng.random(shape) < p_ignore_gt] = IGN
    pred[rng.random(shape) < p_ignore_pred] = IGN
    return gt, pred


def assert_close_or_nan(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        if e is None:
            assert math.isnan(a)
        else:
            assert a == pytest.approx(e, rel=1e-12, abs=1e-12)


# ----------------------------------------------------------------------------------------------
# Confusion matrix against independent computations
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("c", [3, 5, 11, 21])
@pytest.mark.parametrize("mode", ["background", "skip"])
def test_confusion_matches_naive_double_loop(seed, c, mode):
    rng = np.random.default_rng(1000 * seed + c)
    shape = tuple(int(s) for s in rng.integers(5, 40, size=2))
    gt, pred = random_pair(rng, c, shape)
    conf = confusion_matrix(gt, pred, c, pred_ignore=mode)
    assert conf.dtype == np.int64 and conf.shape == (c, c)
    np.testing.assert_array_equal(conf, naive_confusion(gt, pred, c, mode))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("c", [3, 21])
def test_modes_match_reference_eval_scripts(seed, c):
    """skip == SIPE eval_sem_seg (sliced chainercv matrix); background == IRN (pred 255 -> 0 first)."""
    rng = np.random.default_rng(seed)
    gt, pred = random_pair(rng, c, (31, 17), p_ignore_pred=0.3)
    np.testing.assert_array_equal(confusion_matrix(gt, pred, c, pred_ignore="skip"), chainercv_sliced(gt, pred, c))
    irn_pred = np.where(pred == IGN, 0, pred)
    np.testing.assert_array_equal(
        confusion_matrix(gt, pred, c, pred_ignore="background"), chainercv_sliced(gt, irn_pred, c)
    )


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("c", [3, 4, 7, 13, 21])
def test_scores_match_naive(seed, c):
    rng = np.random.default_rng(77 + seed * 31 + c)
    gt, pred = random_pair(rng, c, (23, 29))
    conf = confusion_matrix(gt, pred, c)
    got = segmentation_scores(conf, names(c))
    ref = naive_scores(conf.tolist())
    assert_close_or_nan(got["iou"], ref["iou"])
    assert_close_or_nan(got["fp"], ref["fp"])
    assert_close_or_nan(got["fn"], ref["fn"])
    assert_close_or_nan(got["accuracy"], ref["acc"])
    for key in ("mIoU", "mean_fp", "mean_fn", "mean_acc", "pixel_acc", "fw_iou"):
        assert got[key] == pytest.approx(ref[key], rel=1e-12), key


def test_scores_equal_deeplab_pytorch_formulas_when_every_class_has_gt():
    """docs/method.md G.3: acc = trace/total, acc_cls = nanmean(diag/row), iu, fwavacc over freq > 0."""
    rng = np.random.default_rng(5)
    c = 21
    gt, pred = random_pair(rng, c, (64, 64))
    hist = confusion_matrix(gt, pred, c).astype(np.float64)
    assert (hist.sum(axis=1) > 0).all()
    acc = np.diag(hist).sum() / hist.sum()
    acc_cls = np.nanmean(np.diag(hist) / hist.sum(axis=1))
    iu = np.diag(hist) / (hist.sum(axis=1) + hist.sum(axis=0) - np.diag(hist))
    freq = hist.sum(axis=1) / hist.sum()
    fwavacc = (freq[freq > 0] * iu[freq > 0]).sum()
    s = segmentation_scores(hist, names(c))
    assert s["pixel_acc"] == pytest.approx(acc)
    assert s["mean_acc"] == pytest.approx(acc_cls)
    assert s["mIoU"] == pytest.approx(np.nanmean(iu))
    assert s["fw_iou"] == pytest.approx(fwavacc)
    np.testing.assert_allclose(s["iou"], iu)


# ----------------------------------------------------------------------------------------------
# Hand-made maps with numbers computed by hand
# ----------------------------------------------------------------------------------------------

# 4x4, C = 3, with GT 255 (two pixels) and one predicted 255 (on a GT-0 pixel).
HAND_GT = np.array(
    [
        [0, 0, 0, 0],
        [0, 1, 1, IGN],
        [0, 1, 1, IGN],
        [2, 2, 0, 0],
    ],
    dtype=np.uint8,
)
HAND_PRED = np.array(
    [
        [0, 0, 1, 0],
        [0, 1, 1, 1],
        [0, 0, 1, 2],
        [2, 0, 0, IGN],
    ],
    dtype=np.uint8,
)
# (gt, pred) pairs, GT-255 pixels dropped:
#   row 0: (0,0) (0,0) (0,1) (0,0)
#   row 1: (0,0) (1,1) (1,1)          [(255,1) dropped]
#   row 2: (0,0) (1,0) (1,1)          [(255,2) dropped]
#   row 3: (2,2) (2,0) (0,0) (0,255)
# pred_ignore="background": (0,255) -> (0,0)
#   GT 0: pred 0 x7, pred 1 x1   -> [7, 1, 0]
#   GT 1: pred 0 x1, pred 1 x3   -> [1, 3, 0]
#   GT 2: pred 0 x1, pred 2 x1   -> [1, 0, 1]
HAND_CONF_BACKGROUND = np.array([[7, 1, 0], [1, 3, 0], [1, 0, 1]])
# pred_ignore="skip": the (0,255) pixel is dropped -> row 0 = [6, 1, 0]
HAND_CONF_SKIP = np.array([[6, 1, 0], [1, 3, 0], [1, 0, 1]])


def test_hand_made_confusion_all_modes():
    np.testing.assert_array_equal(confusion_matrix(HAND_GT, HAND_PRED, 3), HAND_CONF_BACKGROUND)  # default
    np.testing.assert_array_equal(
        confusion_matrix(HAND_GT, HAND_PRED, 3, pred_ignore="background"), HAND_CONF_BACKGROUND
    )
    np.testing.assert_array_equal(confusion_matrix(HAND_GT, HAND_PRED, 3, pred_ignore="skip"), HAND_CONF_SKIP)
    with pytest.raises(ValueError, match="255"):
        confusion_matrix(HAND_GT, HAND_PRED, 3, pred_ignore="error")
    # Without the predicted 255, "error" accepts the map and agrees with the other two modes.
    pred = HAND_PRED.copy()
    pred[3, 3] = 0
    for mode in PRED_IGNORE_MODES:
        np.testing.assert_array_equal(confusion_matrix(HAND_GT, pred, 3, pred_ignore=mode), HAND_CONF_BACKGROUND)


def test_hand_made_scores_background_mode():
    s = segmentation_scores(HAND_CONF_BACKGROUND, ["bg", "a", "b"])
    # GT sums 8, 4, 2 (total 14); Pred sums 9, 4, 1; TP 7, 3, 1.
    # Union: 8+9-7 = 10, 4+4-3 = 5, 2+1-1 = 2.
    assert s["gt_pixels"] == [8, 4, 2]
    assert s["pred_pixels"] == [9, 4, 1]
    assert s["tp_pixels"] == [7, 3, 1]
    # IoU 7/10, 3/5, 1/2 -> mIoU (0.7 + 0.6 + 0.5) / 3 = 0.6
    assert s["iou"] == pytest.approx([0.7, 0.6, 0.5])
    assert s["mIoU"] == pytest.approx(0.6)
    # pixel acc = (7 + 3 + 1) / 14 = 11/14
    assert s["pixel_acc"] == pytest.approx(11 / 14)
    # class acc 7/8, 3/4, 1/2 -> mean 2.125 / 3
    assert s["accuracy"] == pytest.approx([0.875, 0.75, 0.5])
    assert s["mean_acc"] == pytest.approx(2.125 / 3)
    # FW-IoU = (8*0.7 + 4*0.6 + 2*0.5) / 14 = (5.6 + 2.4 + 1.0) / 14 = 9/14
    assert s["fw_iou"] == pytest.approx(9 / 14)
    # FP = (Pred-TP)/U: 2/10, 1/5, 0/2; FN = (GT-TP)/U: 1/10, 1/5, 1/2
    assert s["fp"] == pytest.approx([0.2, 0.2, 0.0])
    assert s["fn"] == pytest.approx([0.1, 0.2, 0.5])
    assert s["mean_fp"] == pytest.approx(0.4 / 3)
    assert s["mean_fn"] == pytest.approx(0.8 / 3)
    assert s["num_classes_with_gt"] == 3
    assert s["num_pixels"] == 14
    assert s["num_images"] is None


def test_hand_made_scores_skip_mode():
    s = segmentation_scores(confusion_matrix(HAND_GT, HAND_PRED, 3, pred_ignore="skip"), ["bg", "a", "b"])
    # GT 7, 4, 2 (total 13); Pred 8, 4, 1; TP 6, 3, 1; Union 9, 5, 2.
    # IoU 2/3, 3/5, 1/2 -> mIoU = (2/3 + 0.6 + 0.5) / 3; pixel acc 10/13
    assert s["iou"] == pytest.approx([2 / 3, 0.6, 0.5])
    assert s["mIoU"] == pytest.approx((2 / 3 + 0.6 + 0.5) / 3)
    assert s["pixel_acc"] == pytest.approx(10 / 13)
    # FW = (7*(2/3) + 4*0.6 + 2*0.5) / 13
    assert s["fw_iou"] == pytest.approx((7 * 2 / 3 + 2.4 + 1.0) / 13)


def test_hand_made_3x3_symmetric():
    gt = np.array([[0, 0, 1], [0, 1, 1], [2, 2, 2]])
    pred = np.array([[0, 1, 1], [0, 1, 2], [2, 2, 0]])
    # pairs: (0,0)(0,1)(1,1) (0,0)(1,1)(1,2) (2,2)(2,2)(2,0)
    # rows [2,1,0], [0,2,1], [1,0,2]: every GT 3, Pred 3, TP 2, Union 4
    conf = confusion_matrix(gt, pred, 3)
    np.testing.assert_array_equal(conf, [[2, 1, 0], [0, 2, 1], [1, 0, 2]])
    s = segmentation_scores(conf, names(3))
    assert s["iou"] == pytest.approx([0.5] * 3)  # 2/4
    assert s["fp"] == pytest.approx([0.25] * 3)  # 1/4
    assert s["fn"] == pytest.approx([0.25] * 3)  # 1/4
    assert s["mIoU"] == pytest.approx(0.5)
    assert s["pixel_acc"] == pytest.approx(6 / 9)
    assert s["mean_acc"] == pytest.approx(2 / 3)
    assert s["fw_iou"] == pytest.approx(0.5)  # 3 * (3/9) * 0.5


def test_skip_is_optimistic_for_uncertain_foreground():
    """docs/method.md H.1 item 11: IR labels put 255 on uncertain object borders; skipping them raises the score."""
    gt = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 0, 1, IGN]])
    # background: [[2,0],[1,1]] -> IoU 2/3, 1/2, mIoU 7/12; skip: [[2,0],[0,1]] -> IoU 1, 1
    assert segmentation_scores(confusion_matrix(gt, pred, 2), names(2))["mIoU"] == pytest.approx(7 / 12)
    assert segmentation_scores(confusion_matrix(gt, pred, 2, pred_ignore="skip"), names(2))["mIoU"] == 1.0


def test_gt_ignore_is_skipped_whatever_the_prediction():
    gt = np.full((3, 3), IGN, dtype=np.uint8)
    pred = np.array([[0, 1, 2], [IGN, 1, 0], [2, 2, 2]], dtype=np.uint8)
    for mode in ("background", "skip"):
        assert confusion_matrix(gt, pred, 3, pred_ignore=mode).sum() == 0


def test_classes_absent_from_gt_are_excluded_even_if_predicted():
    gt = np.array([[0, 0], [1, 1]])
    pred = np.array([[0, 2], [1, 1]])
    conf = confusion_matrix(gt, pred, 4)
    # rows: GT0 [1,0,1,0], GT1 [0,2,0,0], GT2 and GT3 empty; class 2 predicted once, class 3 never.
    s = segmentation_scores(conf, names(4))
    # IoU0 = 1/(2+1-1) = 0.5, IoU1 = 2/2 = 1, IoU2 = NaN (no GT; chainercv would say 0), IoU3 = NaN (0/0)
    assert s["iou"][:2] == pytest.approx([0.5, 1.0])
    assert math.isnan(s["iou"][2]) and math.isnan(s["iou"][3])
    assert math.isnan(s["fp"][2]) and math.isnan(s["fn"][2]) and math.isnan(s["accuracy"][2])
    assert s["pred_pixels"][2] == 1
    assert s["mIoU"] == pytest.approx(0.75)  # (0.5 + 1) / 2, not (0.5 + 1 + 0) / 3
    assert s["num_classes_with_gt"] == 2
    assert s["pixel_acc"] == pytest.approx(3 / 4)
    assert s["mean_acc"] == pytest.approx(0.75)  # (1/2 + 2/2) / 2
    assert s["fw_iou"] == pytest.approx(0.75)  # 2/4 * 0.5 + 2/4 * 1
    # FP0 = (1-1)/2 = 0, FP1 = 0; FN0 = (2-1)/2 = 1/2, FN1 = 0. The wrong "2" shows up only as
    # class 0's FN: class 2's own FP is not scored, as it has no GT.
    assert s["mean_fp"] == pytest.approx(0.0)
    assert s["mean_fn"] == pytest.approx(0.25)


@pytest.mark.parametrize("seed", range(5))
def test_iou_fp_fn_sum_to_one(seed):
    rng = np.random.default_rng(seed)
    c = int(rng.integers(3, 22))
    gt, pred = random_pair(rng, c, (40, 40))
    gt[gt == c - 1] = 0  # one class absent from GT: NaN, not part of the identity
    s = segmentation_scores(confusion_matrix(gt, pred, c), names(c))
    for k in range(c):
        if s["gt_pixels"][k] == 0:
            assert math.isnan(s["iou"][k])
        else:
            assert s["iou"][k] + s["fp"][k] + s["fn"][k] == pytest.approx(1.0)
    assert s["mIoU"] + s["mean_fp"] + s["mean_fn"] == pytest.approx(1.0)


def test_empty_matrix_scores_are_nan():
    s = segmentation_scores(np.zeros((3, 3), dtype=np.int64), names(3))
    for key in ("mIoU", "pixel_acc", "mean_acc", "fw_iou", "mean_fp", "mean_fn"):
        assert math.isnan(s[key])
    assert s["num_pixels"] == 0 and s["num_classes_with_gt"] == 0


def test_no_overflow_with_uint8_inputs_and_21_classes():
    gt = np.full((4, 4), 20, dtype=np.uint8)  # 20 * 21 + 20 = 440 > 255
    pred = np.full((4, 4), 20, dtype=np.uint8)
    conf = confusion_matrix(gt, pred, 21)
    assert conf[20, 20] == 16 and conf.sum() == 16


def test_other_ignore_index_and_none():
    gt = np.array([0, 1, -1, 2])
    pred = np.array([0, 1, 1, -1])
    conf = confusion_matrix(gt, pred, 3, ignore_index=-1, pred_ignore="skip")  # chainercv's -1
    np.testing.assert_array_equal(conf, [[1, 0, 0], [0, 1, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="255"):
        confusion_matrix(np.array([0, 255]), np.array([0, 0]), 3, ignore_index=None)


# ----------------------------------------------------------------------------------------------
# Accumulator
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["background", "skip"])
def test_accumulator_equals_concatenated_images(mode):
    rng = np.random.default_rng(11)
    c = 21
    pairs = [random_pair(rng, c, tuple(int(s) for s in rng.integers(3, 50, size=2))) for _ in range(7)]
    acc = ConfusionMatrix(c, pred_ignore=mode)
    for gt, pred in pairs:
        assert acc.update(gt, pred) is acc
    all_gt = np.concatenate([g.ravel() for g, _ in pairs])
    all_pred = np.concatenate([p.ravel() for _, p in pairs])
    np.testing.assert_array_equal(acc.matrix, confusion_matrix(all_gt, all_pred, c, pred_ignore=mode))
    np.testing.assert_array_equal(acc.matrix, naive_confusion(all_gt, all_pred, c, mode))
    assert acc.num_images == 7
    assert acc.scores(names(c))["num_images"] == 7
    # .matrix is a copy: mutating it does not touch the accumulator
    m = acc.matrix
    m[:] = 0
    assert acc.matrix.sum() > 0


def test_merging_shards():
    rng = np.random.default_rng(3)
    c = 6
    pairs = [random_pair(rng, c, (10, 12)) for _ in range(9)]
    whole = ConfusionMatrix(c)
    shards = [ConfusionMatrix(c) for _ in range(3)]
    for i, (gt, pred) in enumerate(pairs):
        whole.update(gt, pred)
        shards[i % 3].update(gt, pred)  # scattergather-style i::n split

    added = shards[0] + shards[1] + shards[2]
    np.testing.assert_array_equal(added.matrix, whole.matrix)
    assert added.num_images == 9
    # + leaves the operands alone
    assert shards[0].num_images == 3

    summed = sum(shards)
    np.testing.assert_array_equal(summed.matrix, whole.matrix)

    merged = ConfusionMatrix(c)
    for shard in shards:
        assert merged.merge(shard) is merged
    np.testing.assert_array_equal(merged.matrix, whole.matrix)

    inplace = shards[0].copy()
    inplace += shards[1]
    inplace += shards[2]
    np.testing.assert_array_equal(inplace.matrix, whole.matrix)
    assert inplace.num_images == 9

    restored = ConfusionMatrix.from_matrix(whole.matrix, num_images=whole.num_images)
    np.testing.assert_array_equal(restored.matrix, whole.matrix)


def test_merging_incompatible_accumulators_fails():
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(3) + ConfusionMatrix(4)
    with pytest.raises(ValueError, match="pred_ignore"):
        ConfusionMatrix(3).merge(ConfusionMatrix(3, pred_ignore="skip"))
    with pytest.raises(TypeError):
        ConfusionMatrix(3) + np.zeros((3, 3), dtype=np.int64)


def test_save_and_load_partial_sum(tmp_path):
    rng = np.random.default_rng(8)
    acc = ConfusionMatrix(5, pred_ignore="skip")
    for _ in range(3):
        acc.update(*random_pair(rng, 5, (9, 9)))
    path = tmp_path / "shard0.npz"
    acc.save(path)
    back = ConfusionMatrix.load(path)
    np.testing.assert_array_equal(back.matrix, acc.matrix)
    assert (back.num_images, back.ignore_index, back.pred_ignore) == (3, 255, "skip")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard0.npz"]

    acc_none = ConfusionMatrix(2, ignore_index=None)
    acc_none.save(tmp_path / "none.npz")
    assert ConfusionMatrix.load(tmp_path / "none.npz").ignore_index is None

    (tmp_path / "junk.npz").write_text("not an npz")
    with pytest.raises(ValueError, match="junk.npz"):
        ConfusionMatrix.load(tmp_path / "junk.npz")


# ----------------------------------------------------------------------------------------------
# Invalid input
# ----------------------------------------------------------------------------------------------


def test_invalid_gt_value_is_named():
    gt = np.array([[0, 21], [3, 255]], dtype=np.uint8)
    with pytest.raises(ValueError, match=r"GT values .*21"):
        confusion_matrix(gt, np.zeros_like(gt), 21)
    with pytest.raises(ValueError, match="-2"):
        confusion_matrix(np.array([0, -2]), np.array([0, 0]), 3)


def test_invalid_pred_value_is_named_even_under_gt_ignore():
    gt = np.array([[0, 255]], dtype=np.uint8)
    pred = np.array([[0, 30]], dtype=np.uint8)
    with pytest.raises(ValueError, match=r"prediction values .*30"):
        confusion_matrix(gt, pred, 21)
    with pytest.raises(ValueError, match="-1"):
        confusion_matrix(np.array([0, 1]), np.array([0, -1]), 3)


def test_error_messages_carry_where_and_are_sipe_errors():
    with pytest.raises(MetricInputError, match=r"^2007_000032: GT values"):
        confusion_matrix(np.array([5]), np.array([0]), 3, where="2007_000032")
    acc = ConfusionMatrix(3)
    with pytest.raises(SipeError, match="img7"):
        acc.update(np.array([0]), np.array([9]), where="img7")
    assert acc.num_images == 0 and acc.matrix.sum() == 0  # a failed update adds nothing


def test_shape_dtype_and_config_errors():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((3, 4), np.uint8), np.zeros((4, 3), np.uint8), 3)
    with pytest.raises(ValueError, match="integer dtype"):
        confusion_matrix(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.uint8), 3)
    with pytest.raises(ValueError, match="pred_ignore"):
        confusion_matrix(np.zeros(2, np.uint8), np.zeros(2, np.uint8), 3, pred_ignore="zero")
    with pytest.raises(ValueError, match="ignore_index"):
        ConfusionMatrix(3, ignore_index=2)
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(0)


def test_scores_input_errors():
    with pytest.raises(ValueError, match="class names"):
        segmentation_scores(np.eye(3, dtype=np.int64), ["a", "b"])
    with pytest.raises(ValueError, match="square"):
        segmentation_scores(np.zeros((2, 3), dtype=np.int64), ["a", "b"])
    with pytest.raises(ValueError, match="negative"):
        segmentation_scores(np.array([[1, -1], [0, 1]]), ["a", "b"])
    with pytest.raises(ValueError, match="non-integer"):
        segmentation_scores(np.array([[1.5, 0], [0, 1]]), ["a", "b"])


# ----------------------------------------------------------------------------------------------
# Written outputs
# ----------------------------------------------------------------------------------------------


def _strict_json(path):
    def reject(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    return json.loads(path.read_text(), parse_constant=reject)


def test_scores_are_plain_python_values():
    s = segmentation_scores(HAND_CONF_BACKGROUND, ["bg", "a", "b"], num_images=np.int64(4))
    for key, value in s.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            assert v is None or type(v) in (float, int, str), (key, type(v))


def test_write_scores_json_has_no_nan_and_csv_round_trips(tmp_path):
    gt = np.array([[0, 0], [1, 1]])
    pred = np.array([[0, 2], [1, 1]])
    s = segmentation_scores(confusion_matrix(gt, pred, 4), ["background", "cat", "dog", "bird"], num_images=1)
    json_path = tmp_path / "metrics" / "scores.json"
    csv_path = tmp_path / "tables" / "per_class.csv"
    write_scores(s, json_path, csv_path)

    data = _strict_json(json_path)
    assert list(data) == sorted(SUMMARY_KEYS)
    assert all(v is None or type(v) in (int, float) for v in data.values())  # scalars only
    assert data["mIoU"] == pytest.approx(0.75)
    assert data["num_images"] == 1
    assert 0.0 <= data["pixel_acc"] <= 1.0  # fractions, not percentages

    table = pd.read_csv(csv_path)
    assert list(table.columns) == list(TABLE_COLUMNS)
    expected = per_class_table(s)
    pd.testing.assert_frame_equal(table, expected, check_dtype=False, check_exact=True)
    assert table["iou"].isna().tolist() == [False, False, True, True]
    assert table.loc[2, "pred_pixels"] == 1 and table.loc[2, "name"] == "dog"

    # nothing but the two outputs is left behind (atomic writes)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["per_class.csv", "scores.json"]


def test_write_scores_of_empty_matrix_writes_null(tmp_path):
    s = segmentation_scores(np.zeros((2, 2), dtype=np.int64), ["background", "x"])
    write_scores(s, tmp_path / "s.json", tmp_path / "s.csv")
    data = _strict_json(tmp_path / "s.json")
    assert data["mIoU"] is None and data["pixel_acc"] is None
    assert "num_images" not in data  # not given
    assert data["num_pixels"] == 0
    assert summary(s) == data


def test_per_class_table_values():
    s = segmentation_scores(HAND_CONF_BACKGROUND, ["bg", "a", "b"])
    table = per_class_table(s)
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert table["name"].tolist() == ["bg", "a", "b"]
    assert table["class_id"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(table["iou"] + table["fp"] + table["fn"], 1.0)
    assert table["gt_pixels"].tolist() == [8, 4, 2]
    assert table["accuracy"].tolist() == pytest.approx([0.875, 0.75, 0.5])
