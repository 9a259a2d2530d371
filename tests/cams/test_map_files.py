"""The per-image map file: float16 npz without pickle, keys aligned with the rows, one-line errors."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from sipe.maps import MapError, find_maps, load_maps, map_keys, save_maps, select_present
from sipe.errors import SipeError


def _maps(k=2, h=5, w=7, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((k, h, w), dtype=np.float32), rng.random((k + 1, h, w), dtype=np.float32)


def test_round_trip_float16_keys_no_pickle(tmp_path):
    cam, is_cam = _maps()
    keys = np.array([0, 3, 17])
    path = tmp_path / "x.npz"
    save_maps(path, keys, cam, is_cam)
    # a plain pickle-free np.load reads the file with the documented arrays and dtypes
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == ["cam", "is_cam", "keys"]
        assert data["keys"].dtype == np.int64 and data["keys"].tolist() == [0, 3, 17]
        assert data["cam"].dtype == np.float16 and data["cam"].shape == (2, 5, 7)
        assert data["is_cam"].dtype == np.float16 and data["is_cam"].shape == (3, 5, 7)
    k2, c2, i2 = load_maps(path)
    assert k2.tolist() == [0, 3, 17]
    np.testing.assert_array_equal(c2, cam.astype(np.float16))
    np.testing.assert_array_equal(i2, is_cam.astype(np.float16))
    assert np.abs(c2.astype(np.float32) - cam).max() < 1e-3  # float16 keeps ~3 decimals in [0, 1]
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary sibling is gone


def test_background_only_image(tmp_path):
    path = tmp_path / "bg.npz"
    save_maps(path, [0], np.zeros((0, 3, 4)), np.ones((1, 3, 4)))
    keys, cam, is_cam = load_maps(path)
    assert keys.tolist() == [0] and cam.shape == (0, 3, 4) and is_cam.shape == (1, 3, 4)


def test_map_keys_and_select_present():
    keys = map_keys([5, 2, 2])
    assert keys.dtype == np.int64 and keys.tolist() == [0, 2, 5]
    cam = np.arange(6)[:, None, None] * np.ones((6, 2, 2))        # C = 6 rows: class c has value c-1
    is_cam = np.arange(7)[:, None, None] * np.ones((7, 2, 2))     # C+1 rows: channel k has value k
    c, i = select_present(keys, cam, is_cam)
    assert c[:, 0, 0].tolist() == [1, 4] and i[:, 0, 0].tolist() == [0, 2, 5]


@pytest.mark.parametrize("keys, cam_shape, is_cam_shape, message", [
    ([0, 1], (1, 4, 4), (3, 4, 4), "is_cam must be [2,H,W]"),
    ([0, 1], (2, 4, 4), (2, 4, 4), "cam must be [1,4,4]"),
    ([0, 1], (1, 4, 5), (2, 4, 4), "cam must be [1,4,4]"),
    ([1, 2], (1, 4, 4), (2, 4, 4), "starting with 0"),
    ([0, 2, 2], (2, 4, 4), (3, 4, 4), "increasing"),
    ([0, 255], (1, 4, 4), (2, 4, 4), "below 255"),
])
def test_save_rejects_inconsistent_maps(tmp_path, keys, cam_shape, is_cam_shape, message):
    with pytest.raises(MapError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        save_maps(tmp_path / "bad.npz", keys, np.zeros(cam_shape), np.zeros(is_cam_shape))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "bad.npz").exists()


def test_save_rejects_nan(tmp_path):
    cam, is_cam = _maps()
    cam[0, 0, 0] = np.nan
    with pytest.raises(MapError, match="NaN"):
        save_maps(tmp_path / "nan.npz", [0, 1, 2], cam, is_cam)


def _one_line_error(path, match):
    with pytest.raises(SipeError, match=match) as info:
        load_maps(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_file(tmp_path):
    _one_line_error(tmp_path / "nope.npz", "map file not found")


def test_corrupt_files(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file at all")
    _one_line_error(garbage, "cannot read map file")

    good = tmp_path / "good.npz"
    save_maps(good, [0, 1], *_maps(k=1, h=40, w=40))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _one_line_error(truncated, "cannot read map file")

    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, keys=np.array([0, 1]), cam=np.zeros((1, 2, 2), np.float16),
             is_cam=np.array([{"a": 1}], dtype=object))
    _one_line_error(pickled, "cannot read map file")

    missing_array = tmp_path / "partial.npz"
    np.savez(missing_array, keys=np.array([0, 1]), cam=np.zeros((1, 2, 2), np.float16))
    _one_line_error(missing_array, "missing arrays: is_cam")

    float32 = tmp_path / "float32.npz"
    np.savez(float32, keys=np.array([0, 1]), cam=np.zeros((1, 2, 2), np.float32),
             is_cam=np.zeros((2, 2, 2), np.float16))
    _one_line_error(float32, "cam must be float16")

    shapes = tmp_path / "shapes.npz"
    np.savez(shapes, keys=np.array([0, 1]), cam=np.zeros((1, 2, 3), np.float16),
             is_cam=np.zeros((2, 2, 2), np.float16))
    _one_line_error(shapes, "cam must be")

    assert zipfile.is_zipfile(good)


def test_find_maps_in_one_or_several_folders(tmp_path):
    a, b = tmp_path / "shard0", tmp_path / "shard1"
    for folder, ids in ((a, ["x", "z"]), (b, ["y"])):
        for image_id in ids:
            save_maps(folder / f"{image_id}.npz", [0], np.zeros((0, 2, 2)), np.ones((1, 2, 2)))
    found = find_maps([a, b], ["x", "y", "z"])
    assert found == {"x": a / "x.npz", "y": b / "y.npz", "z": a / "z.npz"}
    with pytest.raises(SipeError, match=r"no map file for 1 of 2 ids: y") as info:
        find_maps(a, ["x", "y"])
    assert str(a) in str(info.value) and "\n" not in str(info.value)
    save_maps(b / "x.npz", [0], np.zeros((0, 2, 2)), np.ones((1, 2, 2)))
    with pytest.raises(SipeError, match="more than one folder for ids: x"):
        find_maps([a, b], ["x"])
