"""The embedded synthetic dataset: layout, determinism, masks, labels and the part/body design."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from sipe.data.manifest import DatasetManifest, read_id_list, write_content_digest
from sipe.data.synthetic import (
    CLASS_TABLE,
    class_names,
    generate_synthetic,
    object_statistics,
    render_sample,
)
from sipe.errors import ConfigError
from sipe.io import read_label_png

TINY = {
    "seed": 7, "num_classes": 4, "train_aug": 12, "train": 5, "val": 4, "min_side": 64, "max_side": 96,
    "max_objects": 3, "distractors": 2, "border": 2, "jpeg_quality": 90,
}


def _generate(tmp_path_factory, name: str, workers: int = 1, **changes) -> Path:
    out = tmp_path_factory.mktemp(name)
    generate_synthetic(out, {**TINY, **changes}, workers=workers)
    return out


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return _generate(tmp_path_factory, "syn_w1", workers=1)


def test_layout_lists_and_counts(tiny):
    ids_aug = read_id_list(tiny / "ImageSets/Segmentation/train_aug.txt")
    ids_train = read_id_list(tiny / "ImageSets/Segmentation/train.txt")
    ids_val = read_id_list(tiny / "ImageSets/Segmentation/val.txt")
    assert ids_aug == [f"syn_train_{i:06d}" for i in range(12)]
    assert ids_train == ids_aug[:5]
    assert ids_val == [f"syn_val_{i:06d}" for i in range(4)]
    assert not set(ids_val) & set(ids_aug)
    assert len(list((tiny / "JPEGImages").glob("*.jpg"))) == 16
    assert len(list((tiny / "SegmentationClass").glob("*.png"))) == 16
    assert (tiny / "classes.txt").read_text().splitlines() == ["background", "red-ring", "green-cross",
                                                               "blue-stripes", "yellow-dots"]
    labels = json.loads((tiny / "cls_labels.json").read_text())
    assert set(labels) == set(ids_aug) | set(ids_val)
    # no stray temporary files
    assert not [p for p in tiny.rglob("*") if p.name.startswith(".")]
    for image_id in ids_aug + ids_val:
        with Image.open(tiny / "JPEGImages" / f"{image_id}.jpg") as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            assert not im.getexif()
            size = im.size
        mask = read_label_png(tiny / "SegmentationClass" / f"{image_id}.png")
        assert mask.shape == (size[1], size[0])
        assert 64 <= size[0] <= 96 and 64 <= size[1] <= 96
        with Image.open(tiny / "SegmentationClass" / f"{image_id}.png") as im:
            assert im.mode == "P"


def test_manifest_loads(tiny):
    manifest = DatasetManifest.load(tiny)
    assert manifest.name == "synthetic"
    assert manifest.num_classes == 5
    assert manifest.classes[0] == "background"
    assert set(manifest.splits) == {"train_aug", "train", "val"}
    assert manifest.ids("train") == manifest.ids("train_aug")[:5]
    image_id = manifest.ids("val")[0]
    assert manifest.image_path("val", image_id).is_file()
    assert manifest.mask_path("val", image_id).is_file()
    labels = manifest.class_labels()
    assert all(1 <= c <= 4 for v in labels.values() for c in v)
    assert all(len(v) >= 1 for v in labels.values())


def test_same_seed_byte_identical_across_workers(tiny, tmp_path_factory):
    parallel = _generate(tmp_path_factory, "syn_w2", workers=2)
    a, b = _digests(tiny), _digests(parallel)
    assert len(a) == 16 * 2 + 6  # images, masks, 3 lists, cls_labels, classes, dataset.json
    assert a == b


def test_different_seed_gives_different_files(tiny, tmp_path_factory):
    other = _digests(_generate(tmp_path_factory, "syn_seed8", seed=8))
    base = _digests(tiny)
    images = [k for k in base if k.startswith("JPEGImages/")]
    assert sum(base[k] != other[k] for k in images) == len(images)


def test_mask_values_and_labels_match(tiny):
    manifest = DatasetManifest.load(tiny)
    labels = manifest.class_labels()
    for role in ("train_aug", "val"):
        for image_id in manifest.ids(role):
            mask = read_label_png(manifest.mask_path(role, image_id))
            values = set(np.unique(mask).tolist())
            assert values <= {0, 1, 2, 3, 4, 255}
            assert 255 in values  # every image has an object, so a void band
            visible = tuple(sorted(v for v in values if v not in (0, 255)))
            assert labels[image_id] == visible


def _touching_pairs(mask: np.ndarray) -> int:
    """Count 4-adjacent pixel pairs with two different non-ignore labels."""
    n = 0
    for a, b in ((mask[:, 1:], mask[:, :-1]), (mask[1:, :], mask[:-1, :])):
        n += int(((a != b) & (a != 255) & (b != 255)).sum())
    return n


def test_border_band_separates_objects():
    for index in range(10):
        with_band = render_sample(TINY, "train_aug", index)
        without = render_sample({**TINY, "border": 0}, "train_aug", index)
        # the band does not change the picture or the rest of the mask
        assert np.array_equal(with_band.image, without.image)
        keep = with_band.label != 255
        assert np.array_equal(with_band.label[keep], without.label[keep])
        assert 255 not in without.label
        assert _touching_pairs(with_band.label) == 0
        assert _touching_pairs(without.label) > 0
        # the band is exactly the pixels whose 3x3 window sees two instances (border 2 = 1 px each side)
        inst = np.zeros(with_band.label.shape, np.uint8)
        for obj in with_band.objects:
            inst[obj.part_mask | obj.body_mask] = obj.instance
        band = ndimage.maximum_filter(inst, size=3) != ndimage.minimum_filter(inst, size=3)
        assert np.array_equal(band, with_band.label == 255)


def test_no_band_when_border_zero(tmp_path_factory):
    root = _generate(tmp_path_factory, "syn_b0", border=0, train_aug=3, train=1, val=1)
    for png in (root / "SegmentationClass").glob("*.png"):
        assert 255 not in read_label_png(png)


def test_settings_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="synthetic.train"):
        generate_synthetic(tmp_path, {**TINY, "train": 13})
    with pytest.raises(ConfigError, match="synthetic.num_classes"):
        generate_synthetic(tmp_path, {**TINY, "num_classes": 21})
    with pytest.raises(ConfigError, match="synthetic.sizes: must be one of uniform, voc, got 'square'"):
        generate_synthetic(tmp_path, {**TINY, "sizes": "square"})
    with pytest.raises(ConfigError, match="min_side"):
        generate_synthetic(tmp_path, {**TINY, "min_side": 100})
    (tmp_path / "x").write_text("")
    with pytest.raises(ConfigError, match="not empty"):
        generate_synthetic(tmp_path, TINY)


def test_content_digest_follows_every_byte(tiny, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny, copy)
    first, again = write_content_digest(copy), write_content_digest(copy)
    assert first == again and first["files"] == len([p for p in tiny.rglob("*") if p.is_file()])
    assert json.loads((copy / "content.json").read_text()) == first
    mask = next((copy / "SegmentationClass").iterdir())
    data = bytearray(mask.read_bytes())
    data[-1] ^= 1
    mask.write_bytes(bytes(data))
    assert write_content_digest(copy)["sha256"] != first["sha256"]


def test_class_names():
    assert class_names(12)[:4] == ["red-ring", "green-cross", "blue-stripes", "yellow-dots"]
    assert len(set(class_names(20))) == 20  # VOC's class count, every marker distinct
    assert class_names(20)[12:14] == ["red-stripes", "green-diamond"]
    assert len(set(CLASS_TABLE[:6])) == 6 and len({c for c, _ in CLASS_TABLE[:6]}) == 6


def test_voc_sizes_have_a_long_side_of_max_side():
    settings = {**TINY, "num_classes": 20, "min_side": 250, "max_side": 500, "sizes": "voc"}
    shapes = [render_sample(settings, "train_aug", i).label.shape for i in range(40)]
    assert all(max(shape) == 500 and 250 <= min(shape) <= 500 for shape in shapes)
    portrait = sum(height > width for height, width in shapes)
    assert 4 <= portrait <= 18  # one in four expected (10 of 40)
    uniform = [render_sample({**settings, "sizes": "uniform"}, "train_aug", i).label.shape for i in range(40)]
    assert sum(max(shape) < 500 for shape in uniform) > 30


DESIGN = {**TINY, "num_classes": 6, "train_aug": 120, "train": 1, "min_side": 112, "max_side": 176,
          "max_objects": 3, "distractors": 3}


def _nearest_centroid_accuracy(features: np.ndarray, classes: np.ndarray) -> float:
    """Leave-one-out accuracy of a nearest-class-mean classifier."""
    correct = 0
    for i in range(len(features)):
        rest = np.ones(len(features), bool)
        rest[i] = False
        centroids = {c: features[rest & (classes == c)].mean(axis=0) for c in np.unique(classes)}
        guess = min(centroids, key=lambda c: np.linalg.norm(features[i] - centroids[c]))
        correct += guess == classes[i]
    return correct / len(features)


def test_part_is_discriminative_and_body_is_not():
    markers, bodies, classes = [], [], []
    for index in range(240):  # about 60 objects per class, so class means of random body colours are close
        sample = render_sample({**DESIGN, "train_aug": 240}, "train_aug", index)
        pixels = sample.image.astype(np.float64) / 255.0
        for obj in sample.objects:
            body = obj.body_mask & ~ndimage.binary_dilation(obj.part_mask, iterations=2)
            if obj.marker_pixels < 6 or body.sum() < 50:
                continue
            markers.append(pixels[obj.marker_mask].mean(axis=0))
            bodies.append(pixels[body].mean(axis=0))
            classes.append(obj.class_index)
    markers, bodies, classes = np.array(markers), np.array(bodies), np.array(classes)
    assert len(classes) > 120 and set(classes.tolist()) == set(range(1, 7))
    # the marker alone names the class ...
    assert _nearest_centroid_accuracy(markers, classes) > 0.95
    # ... while the body's colour is close to chance (1/6)
    assert _nearest_centroid_accuracy(bodies, classes) < 0.35
    # body colours of every class span overlapping ranges: each class's body-colour mean lies
    # within half a within-class standard deviation of the pooled mean; marker means lie far apart
    pooled = bodies.mean(axis=0)
    for c in range(1, 7):
        spread = bodies[classes == c].std(axis=0).mean()
        assert np.linalg.norm(bodies[classes == c].mean(axis=0) - pooled) < 0.5 * spread
    marker_means = np.array([markers[classes == c].mean(axis=0) for c in range(1, 7)])
    gaps = np.linalg.norm(marker_means[:, None] - marker_means[None], axis=-1)
    assert gaps[~np.eye(6, dtype=bool)].min() > 0.3


def _saturation(pixels: np.ndarray) -> np.ndarray:
    """HSV saturation of float RGB pixels [..., 3]."""
    top = pixels.max(axis=-1)
    return (top - pixels.min(axis=-1)) / np.maximum(top, 1e-6)


def test_bodies_stand_out_from_the_muted_background():
    body_sat, background_sat = [], []
    for index in range(60):
        sample = render_sample({**DESIGN, "train_aug": 60}, "train_aug", index)
        sat = _saturation(sample.image.astype(np.float64) / 255.0)
        for obj in sample.objects:
            body = obj.body_mask & ~ndimage.binary_dilation(obj.part_mask, iterations=2)
            if body.sum() >= 50:
                body_sat.append(np.median(sat[body]))
        background_sat.append(np.median(sat[sample.label == 0]))
    body_sat, background_sat = np.array(body_sat), np.array(background_sat)
    assert len(body_sat) > 60
    # vivid instance colours (saturation 0.30-0.65, shifted a little by shading and fur) ...
    assert (body_sat > 0.3).mean() > 0.9
    # ... on a muted background (saturation 0.06-0.38, plus vivid distractors and spots)
    assert np.median(background_sat) < 0.33
    assert np.median(body_sat) > np.median(background_sat) + 0.15


def test_object_statistics_follow_the_design():
    df = object_statistics(DESIGN, "train_aug", 120)
    per_image = df.groupby("image")
    assert per_image.ngroups == 120  # every image holds an object
    assert 1.3 <= per_image.size().mean() <= 2.4
    assert 1.2 <= per_image["class_index"].nunique().mean() <= 1.8
    assert per_image.size().max() <= 3
    assert 0.14 <= df["part_fraction"].median() <= 0.26  # PART_FRACTION 0.14-0.22, heads of at least 9 px
    area = df["object_pixels"] / df["image_pixels"]
    assert 0.10 <= area.mean() <= 0.30  # bodies of 0.25-0.45 of the short side: several s16 cells each
