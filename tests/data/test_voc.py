"""prepare_voc: VOC 2012 + SBD -> prepared dataset (docs/method.md A.1, A.2)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sipe.data.manifest import DatasetManifest
from sipe.data.voc import VOC_CLASSES, prepare_voc, read_voc_labels
from sipe.errors import DatasetError
from sipe.io import read_label_png, voc_palette
from tests.data.fixtures import (A, B, C, D, E, F, G, H, SBD_TRAIN, SBD_VAL, T, TRAIN_AUG, VOC_NAMES, VOC_OBJECTS,
                                 VOC_TRAIN, VOC_VAL, expected_voc_labels, make_sbd_tree, make_voc_tree, sbd_mask,
                                 voc_mask, write_palette_png, write_sbd_mat)


@pytest.fixture
def roots(tmp_path):
    voc = make_voc_tree(tmp_path / "VOCdevkit" / "VOC2012")
    sbd = make_sbd_tree(tmp_path / "benchmark_RELEASE" / "dataset")
    out = tmp_path / "data" / "voc"
    out.mkdir(parents=True)
    return voc, sbd, out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("voc")
    voc = make_voc_tree(tmp / "VOC2012")
    sbd = make_sbd_tree(tmp / "sbd")
    out = tmp / "out"
    out.mkdir()
    manifest = prepare_voc(voc, sbd, out)
    return voc, sbd, out, manifest


def read_list(path: Path) -> list[str]:
    return path.read_text().split()


def tree_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_voc_classes_are_background_and_the_20_alphabetical_names():
    assert VOC_CLASSES == VOC_NAMES
    assert len(VOC_CLASSES) == 21 and VOC_CLASSES[1] == "aeroplane" and VOC_CLASSES[20] == "tvmonitor"


def test_voc_split_counts_and_set_algebra(prepared):
    _, _, out, manifest = prepared
    lists = out / "ImageSets" / "Segmentation"
    train_aug = read_list(lists / "train_aug.txt")
    assert train_aug == TRAIN_AUG and len(train_aug) == 6
    assert read_list(lists / "train.txt") == VOC_TRAIN
    assert read_list(lists / "val.txt") == VOC_VAL
    assert read_list(lists / "test.txt") == [T]
    assert B in SBD_VAL and B in VOC_TRAIN and B in train_aug      # SBD val + VOC train -> train_aug
    assert E in SBD_TRAIN and E in VOC_VAL and E not in train_aug  # SBD train + VOC val -> not train_aug
    assert D not in train_aug and T not in train_aug
    assert set(VOC_TRAIN) <= set(train_aug)
    assert [manifest.ids(role) for role in ("train_aug", "train", "val", "test")] == [
        TRAIN_AUG, VOC_TRAIN, VOC_VAL, [T]]


def test_voc_manifest_round_trips_and_points_at_the_voc_images(prepared):
    voc, _, out, manifest = prepared
    raw = json.loads((out / "dataset.json").read_text())
    assert raw["name"] == "voc" and raw["classes"] == list(VOC_CLASSES)
    assert raw["splits"]["train_aug"]["masks"] == "SegmentationClassAug"
    assert raw["splits"]["test"]["masks"] is None
    assert not os.path.isabs(raw["splits"]["val"]["images"])
    loaded = DatasetManifest.load(out)
    for role in ("train_aug", "train", "val", "test"):
        assert loaded.split(role).image_dir.resolve() == (voc / "JPEGImages").resolve()
    assert loaded.image_path("train", A).is_file()
    assert loaded.ids("train_aug") == manifest.ids("train_aug")
    assert (out / "classes.txt").read_text().splitlines() == list(VOC_CLASSES)


def test_voc_labels_exactly_as_the_xmls_say(prepared):
    _, _, out, manifest = prepared
    labels = manifest.class_labels()
    assert set(labels) == set(TRAIN_AUG) | set(VOC_VAL)           # train_aug | val, not test
    for image_id, value in labels.items():
        assert list(value) == expected_voc_labels(image_id)
    assert labels[A] == (1, 15)                                     # aeroplane, person (difficult one too)
    assert labels[D] == (8, 18)                                     # difficult + truncated cat counts
    assert labels[H] == (9, 11, 16)
    raw = json.loads((out / "cls_labels.json").read_text())
    assert raw[C] == [2, 20]


def test_voc_part_names_are_not_classes(tmp_path):
    xml = tmp_path / "x.xml"
    xml.write_text("<annotation><object><name>person</name><part><name>head</name></part>"
                   "<part><name>hand</name></part></object><object><name>dog</name><difficult>1</difficult>"
                   "</object></annotation>")
    assert read_voc_labels(xml) == [12, 15]


def test_voc_masks_come_from_voc_png_else_sbd_mat(prepared):
    _, _, out, _ = prepared
    mask_dir = out / "SegmentationClassAug"
    assert sorted(p.stem for p in mask_dir.iterdir()) == sorted(set(TRAIN_AUG) | set(VOC_VAL))
    for image_id in (A, B, C, D, E):          # VOC masks win, even where SBD has a .mat (A, B, E)
        np.testing.assert_array_equal(read_label_png(mask_dir / f"{image_id}.png"), voc_mask(image_id))
    for image_id in (F, G, H):                # SBD only
        np.testing.assert_array_equal(read_label_png(mask_dir / f"{image_id}.png"), sbd_mask(image_id))
    assert (read_label_png(mask_dir / f"{A}.png") == 255).any()
    assert not np.array_equal(voc_mask(A), sbd_mask(A))
    with Image.open(mask_dir / f"{F}.png") as image:
        assert image.mode == "P"
        assert image.getpalette()[:3 * 21] == voc_palette()[:3 * 21]


def test_voc_parallel_workers_give_identical_files(prepared):
    voc, sbd, out, _ = prepared
    out2 = out.parent / "out_workers2"  # a sibling: dataset.json's relative paths are the same
    out2.mkdir()
    prepare_voc(voc, sbd, out2, workers=2)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(out2)) for p in out2.rglob("*") if p.is_file())
    for name in files:
        assert (out / name).read_bytes() == (out2 / name).read_bytes(), name


def test_voc_never_writes_into_the_roots(roots):
    voc, sbd, out = roots
    before = tree_snapshot(voc), tree_snapshot(sbd)
    prepare_voc(voc, sbd, out)
    assert (tree_snapshot(voc), tree_snapshot(sbd)) == before
    assert (out / "dataset.json").is_file()


def test_voc_without_test_list_has_no_test_split(tmp_path):
    objects = {k: v for k, v in VOC_OBJECTS.items() if k != T}
    voc = make_voc_tree(tmp_path / "voc", test=None, objects=objects)
    sbd = make_sbd_tree(tmp_path / "sbd")
    out = tmp_path / "out"
    out.mkdir()
    manifest = prepare_voc(voc, sbd, out)
    assert set(manifest.splits) == {"train_aug", "train", "val"}
    assert not (out / "ImageSets" / "Segmentation" / "test.txt").exists()


def test_voc_sbd_list_in_sipe_style_is_accepted(roots):
    voc, sbd, out = roots
    (sbd / "val.txt").write_text("".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in SBD_VAL))
    manifest = prepare_voc(voc, sbd, out)
    assert manifest.ids("train_aug") == TRAIN_AUG


# --- broken inputs: one-line DatasetError naming the file, and no dataset.json ---------------------------


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _write_mat_without_segmentation(path: Path) -> None:
    import scipy.io

    scipy.io.savemat(path, {"GTcls": {"Boundaries": np.zeros((2, 2), np.uint8)}})


def _out_of_range_mask(path: Path) -> None:
    mask = voc_mask(C)
    mask[3, 3] = 37
    write_palette_png(path, mask)


def _out_of_range_mat(path: Path) -> None:
    mask = sbd_mask(G)
    mask[4, 4] = 21
    write_sbd_mat(path, mask)


def _unknown_class(path: Path) -> None:
    path.write_text(path.read_text().replace("<name>bottle</name>", "<name>bottel</name>"))


BROKEN = {
    "missing image": (lambda voc, sbd: (voc / "JPEGImages" / f"{F}.jpg").unlink(), [f"{F}.jpg", "JPEGImages"]),
    "missing test image": (lambda voc, sbd: (voc / "JPEGImages" / f"{T}.jpg").unlink(), [f"{T}.jpg"]),
    "garbage image": (lambda voc, sbd: (voc / "JPEGImages" / f"{G}.jpg").write_bytes(b"\x00garbage" * 20),
                      [f"{G}.jpg", "JPEGImages", "unreadable"]),
    "truncated image": (lambda voc, sbd: _truncate(voc / "JPEGImages" / f"{C}.jpg"),
                        [f"{C}.jpg", "JPEGImages", "truncated"]),
    "missing voc mask": (lambda voc, sbd: (voc / "SegmentationClass" / f"{C}.png").unlink(),
                         [f"{C}.png", "SegmentationClass", "train.txt"]),
    "missing sbd mat": (lambda voc, sbd: (sbd / "cls" / f"{H}.mat").unlink(), [f"{H}.mat", "cls"]),
    "missing xml": (lambda voc, sbd: (voc / "Annotations" / f"{G}.xml").unlink(), [f"{G}.xml", "Annotations"]),
    "mask value out of range": (lambda voc, sbd: _out_of_range_mask(voc / "SegmentationClass" / f"{C}.png"),
                                [f"{C}.png (value 37)", "out of range 0..20/255"]),
    "mat value out of range": (lambda voc, sbd: _out_of_range_mat(sbd / "cls" / f"{G}.mat"),
                               [f"{G}.mat (value 21)", "out of range"]),
    "mask size mismatch": (lambda voc, sbd: write_palette_png(voc / "SegmentationClass" / f"{D}.png",
                                                              np.zeros((20, 20), np.uint8)),
                           [f"{D}.png (mask 20x20, image 24x32)", "size"]),
    "garbage mask": (lambda voc, sbd: (voc / "SegmentationClass" / f"{B}.png").write_bytes(b"not a png"),
                     [f"{B}.png", "unreadable"]),
    "rgb mask": (lambda voc, sbd: Image.new("RGB", (24, 32)).save(voc / "SegmentationClass" / f"{B}.png"),
                 [f"{B}.png (mode RGB)"]),
    "mat without GTcls.Segmentation": (lambda voc, sbd: _write_mat_without_segmentation(sbd / "cls" / f"{F}.mat"),
                                       [f"{F}.mat", "GTcls.Segmentation"]),
    "garbage mat": (lambda voc, sbd: (sbd / "cls" / f"{F}.mat").write_bytes(b"garbage"), [f"{F}.mat"]),
    "unknown xml class": (lambda voc, sbd: _unknown_class(voc / "Annotations" / f"{G}.xml"),
                          [f"{G}.xml", "'bottel'"]),
    "broken xml": (lambda voc, sbd: (voc / "Annotations" / f"{G}.xml").write_text("<annotation><object>"),
                   [f"{G}.xml", "XML"]),
    "empty id list": (lambda voc, sbd: (voc / "ImageSets/Segmentation/train.txt").write_text("\n"),
                      ["train.txt", "empty"]),
    "duplicate ids": (lambda voc, sbd: (voc / "ImageSets/Segmentation/val.txt").write_text(f"{D}\n{E}\n{D}\n"),
                      ["val.txt", "duplicate", D]),
    "id with slash": (lambda voc, sbd: (sbd / "train.txt").write_text(f"{F}\nsub/{G}\n"),
                      ["train.txt", f"sub/{G}"]),
    "id with dotdot": (lambda voc, sbd: (sbd / "val.txt").write_text(f"{H}\n..{B}\n"), ["val.txt", f"..{B}"]),
    "absolute id": (lambda voc, sbd: (voc / "ImageSets/Segmentation/train.txt").write_text(f"{A}\n/etc/passwd\n"),
                    ["train.txt", "/etc/passwd"]),
    "missing voc list": (lambda voc, sbd: (voc / "ImageSets/Segmentation/val.txt").unlink(),
                         ["val.txt", "voc.root"]),
    "missing sbd list": (lambda voc, sbd: (sbd / "train.txt").unlink(), ["train.txt", "voc.sbd_root"]),
    "missing sbd cls folder": (lambda voc, sbd: shutil.rmtree(sbd / "cls"), ["cls", "benchmark.tgz"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_voc_broken_input_is_one_line_error_naming_the_file(roots, case):
    voc, sbd, out = roots
    breaker, expected = BROKEN[case]
    breaker(voc, sbd)
    with pytest.raises(DatasetError) as info:
        prepare_voc(voc, sbd, out, workers=2 if case == "truncated image" else 1)
    message = str(info.value)
    assert "\n" not in message
    for fragment in expected:
        assert fragment in message, message
    assert not (out / "dataset.json").exists()


def test_voc_missing_sbd_root(roots):
    voc, _, out = roots
    with pytest.raises(DatasetError) as info:
        prepare_voc(voc, out.parent / "no_sbd", out)
    message = str(info.value)
    assert "no_sbd" in message and "SBD" in message and "benchmark.tgz" in message and "voc.sbd_root" in message
    assert "\n" not in message and not any(out.iterdir())


def test_voc_missing_voc_root(roots):
    _, sbd, out = roots
    with pytest.raises(DatasetError, match=r"no_voc: VOC 2012 root not found .*voc\.root"):
        prepare_voc(out.parent / "no_voc", sbd, out)


def test_voc_refuses_a_non_empty_output_folder(roots):
    voc, sbd, out = roots
    (out / "stale.txt").write_text("x")
    with pytest.raises(DatasetError, match="not empty"):
        prepare_voc(voc, sbd, out)
