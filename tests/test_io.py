"""Atomic outputs and palette label PNGs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sipe.io import atomic_path, read_label_png, save_label_png, voc_palette, write_json


def test_voc_palette_known_colours():
    palette = voc_palette()
    assert len(palette) == 768
    assert palette[0:3] == [0, 0, 0]
    assert palette[3:6] == [128, 0, 0]        # aeroplane
    assert palette[15 * 3:16 * 3] == [192, 128, 128]  # person
    assert palette[255 * 3:256 * 3] == [224, 224, 192]  # void


def test_label_png_round_trip_keeps_indices(tmp_path):
    label = np.array([[0, 1, 20], [255, 7, 0]], dtype=np.uint8)
    save_label_png(tmp_path / "a.png", label)
    with Image.open(tmp_path / "a.png") as image:
        assert image.mode == "P"
    np.testing.assert_array_equal(read_label_png(tmp_path / "a.png"), label)


def test_label_png_rejects_rgb_and_wrong_dtype(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="rgb.png: label PNG must be palette"):
        read_label_png(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="2-D uint8"):
        save_label_png(tmp_path / "b.png", np.zeros((2, 2), dtype=np.int32))
    assert not (tmp_path / "b.png").exists()


def test_atomic_file_is_absent_after_failure_and_old_content_kept(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_directory_replaces_whole_or_nothing(tmp_path):
    target = tmp_path / "data"
    with atomic_path(target, directory=True) as tmp:
        (tmp / "x.txt").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_path(target, directory=True) as tmp:
            (tmp / "y.txt").write_text("2")
            raise RuntimeError("killed")
    assert sorted(p.name for p in target.iterdir()) == ["x.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    with atomic_path(target, directory=True) as tmp:
        (tmp / "z.txt").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["z.txt"]
