"""multiscale_maps (docs/method.md A.5, D fusion), sharding and map writing; a real SIPENet when it is importable."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sipe.maps import load_maps, multiscale_maps, rescale_image
from sipe.data.manifest import DatasetManifest
from sipe.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from sipe.errors import SipeError
from sipe.stages.cams import write_maps
from sipe.stages.shards import shard_ids

from .tiny import CLASSES, LABELS, TRAIN_AUG, make_dataset


class StubModel(torch.nn.Module):
    """Records every ``infer`` input; returns maps at stride 4 made by ``make(x, label)``."""

    def __init__(self, num_classes, make=None):
        super().__init__()
        self.num_classes = num_classes
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.inputs = []
        self.make = make or self.constant

    def constant(self, x, label):
        h, w = -(-x.shape[2] // 4), -(-x.shape[3] // 4)
        size = float(x.shape[2])
        cam = torch.arange(1, self.num_classes + 1, dtype=torch.float32)[:, None, None] * size * torch.ones(h, w)
        is_cam = label.reshape(-1, 1, 1) * size * torch.ones(h, w)
        return cam, is_cam

    def infer(self, image, label):
        assert image.dim() == 4 and image.shape[:2] == (1, 3) and image.dtype == torch.float32
        self.inputs.append(image.clone())
        return self.make(image, label)


def test_scales_sizes_and_fusion_of_constant_maps():
    model = StubModel(3)
    image = np.full((30, 45, 3), 128, np.uint8)
    label = np.array([1, 0, 1, 1], np.float32)
    cam, is_cam = multiscale_maps(model, image, label, scales=(1.0, 0.5, 1.5, 2.0))
    # PIL resize to (round(H·s), round(W·s)): note round(22.5) = 22 (round half to even, like np.round)
    assert [tuple(x.shape[2:]) for x in model.inputs] == [(30, 45), (15, 22), (45, 68), (60, 90)]
    assert cam.shape == (3, 30, 45) and is_cam.shape == (4, 30, 45)
    assert cam.dtype == np.float32 and is_cam.dtype == np.float32
    # constant per channel; summed (30 + 15 + 45 + 60 = 150 per unit) and divided by max + 1e-5
    for c in range(3):
        assert cam[c].min() == cam[c].max() == pytest.approx(150 * (c + 1) / (150 * (c + 1) + 1e-5), abs=1e-7)
    assert np.all(is_cam[1] == 0)  # an absent class stays zero (no division by zero)
    assert is_cam[0].max() == pytest.approx(1 - 1e-5 / 150, abs=1e-7)


def test_input_is_imagenet_normalised_and_bicubic():
    model = StubModel(1)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
    multiscale_maps(model, image, [1, 1], scales=(1.0, 0.5))
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    for x, scale in zip(model.inputs, (1.0, 0.5)):
        ref = np.asarray(Image.fromarray(image).resize((round(24 * scale), round(20 * scale)),
                                                       Image.Resampling.BICUBIC)) if scale != 1 else image
        ref = ((ref / 255.0 - mean) / std).transpose(2, 0, 1)
        np.testing.assert_allclose(x[0].numpy(), ref, atol=1e-5)
    assert rescale_image(image, 1.0) is image


def test_upsampling_summing_and_normalisation():
    # maps at stride 4 that depend on the input: fused result = Σ_s upsample(map_s) / (max + 1e-5)
    def make(x, label):
        h, w = -(-x.shape[2] // 4), -(-x.shape[3] // 4)
        ramp = torch.linspace(-1, 2, h * w).reshape(1, h, w)  # negative part is cut by the ReLU
        return torch.cat([ramp, 2 * ramp]), torch.cat([ramp.abs(), ramp.abs() + 1, ramp.abs() * 0])

    model = StubModel(2, make)
    image = np.zeros((16, 24, 3), np.uint8)
    cam, is_cam = multiscale_maps(model, image, [1, 1, 1], scales=(1.0, 2.0))
    sums = [torch.zeros(2, 16, 24), torch.zeros(3, 16, 24)]
    for x in model.inputs:
        for i, m in enumerate(make(x, None)):
            sums[i] += F.interpolate(m[None], (16, 24), mode="bilinear", align_corners=False)[0]
    for got, total in zip((cam, is_cam), sums):
        total = total.clamp(min=0)
        expected = total / (total.amax(dim=(1, 2), keepdim=True) + 1e-5)
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-6, atol=1e-7)
    assert cam.min() == 0.0 and is_cam[2].max() == 0.0
    assert np.all(cam.max(axis=(1, 2)) == pytest.approx(1.0, abs=1e-4))


def test_argument_checks():
    model = StubModel(2)
    with pytest.raises(ValueError, match="label"):
        multiscale_maps(model, np.zeros((8, 8, 3), np.uint8), [0, 1, 0])
    with pytest.raises(ValueError, match="uint8 RGB"):
        multiscale_maps(model, np.zeros((8, 8), np.uint8), [1, 1, 0])
    with pytest.raises(ValueError, match="scale"):
        multiscale_maps(model, np.zeros((8, 8, 3), np.uint8), [1, 1, 0], scales=())
    with pytest.raises(ValueError, match="channels"):
        multiscale_maps(model, np.zeros((8, 8, 3), np.uint8), [1, 1, 0, 0])


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_cover_every_id_once(count):
    ids = [f"id{i:03d}" for i in range(20)]
    shards = [shard_ids(ids, (i, count)) for i in range(count)]
    flat = [i for shard in shards for i in shard]
    assert sorted(flat) == ids and len(flat) == len(set(flat))
    assert shards == [shard_ids(ids, (i, count)) for i in range(count)]  # deterministic
    assert shards[0][:2] == ids[0:2 * count:count]  # ids[i::n]


@pytest.mark.parametrize("shard", [(2, 2), (-1, 2), (0, 0), ("a", 1)])
def test_bad_shard(shard):
    with pytest.raises(SipeError, match="shard"):
        shard_ids(["a", "b"], shard)


def test_write_maps_in_shards(tmp_path):
    manifest = make_dataset(tmp_path / "data")
    model = StubModel(len(CLASSES) - 1)
    for i in range(2):
        ids = shard_ids(manifest.ids("train_aug"), (i, 2))
        assert write_maps(model, manifest, "train_aug", ids, tmp_path / f"shard{i}", (1.0, 0.5),
                          show_progress=False) == len(ids)
    files = sorted(p.stem for i in range(2) for p in (tmp_path / f"shard{i}").glob("*.npz"))
    assert files == sorted(TRAIN_AUG)
    for image_id in TRAIN_AUG:
        folder = tmp_path / f"shard{TRAIN_AUG.index(image_id) % 2}"
        keys, cam, is_cam = load_maps(folder / f"{image_id}.npz")
        assert keys.tolist() == [0, *LABELS[image_id]]
        h, w = np.asarray(Image.open(manifest.image_path("train_aug", image_id))).shape[:2]
        assert cam.shape == (len(LABELS[image_id]), h, w) and is_cam.shape == (len(keys), h, w)
        # the constant stub gives class c the value c·Σ sizes before normalisation: rows kept are keys[1:]
        assert np.all(cam.astype(np.float32) > 0.99)
    assert not list(tmp_path.rglob(".*.tmp"))


def test_write_maps_names_unreadable_image(tmp_path):
    manifest = make_dataset(tmp_path / "data")
    bad = manifest.image_path("train_aug", "img1")
    bad.write_bytes(b"not an image")
    with pytest.raises(SipeError, match="img1.png: cannot read image") as info:
        write_maps(StubModel(3), manifest, "train_aug", TRAIN_AUG, tmp_path / "maps", show_progress=False)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# With the real network (resnet18, random init); skipped until sipe.models provides it.

def _real_net(num_classes):
    sipe_net = pytest.importorskip("sipe.models.sipe_net")
    torch.manual_seed(0)
    return sipe_net.SIPENet(num_classes, backbone="resnet18", weights=None).eval()


def test_multiscale_maps_with_sipenet():
    model = _real_net(3)
    calls = []
    infer = model.infer
    model.infer = lambda x, label: calls.append(tuple(x.shape[2:])) or infer(x, label)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
    cam, is_cam = multiscale_maps(model, image, [1, 1, 0, 1])
    assert calls == [(40, 56), (20, 28), (60, 84), (80, 112)]
    assert cam.shape == (3, 40, 56) and is_cam.shape == (4, 40, 56)
    for maps in (cam, is_cam):
        assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    # every channel is max-normalised: its max is ≈ 1, or it is zero everywhere (a random net can leave
    # a present class without seeds, hence with a zero prototype)
    for maps in (cam, is_cam):
        for channel in maps:
            assert channel.max() == 0 or channel.max() == pytest.approx(1.0, abs=1e-4)
    assert np.all(is_cam[2] == 0)  # absent class: zero prototype, zero IS-CAM (docs/method.md B.5)
    assert is_cam.max() == pytest.approx(1.0, abs=1e-4) and cam.max() == pytest.approx(1.0, abs=1e-4)
    cam1, is_cam1 = multiscale_maps(model, image, [1, 1, 0, 1], scales=(1.0,))
    assert calls[-1] == (40, 56) and len(calls) == 5
    assert not np.allclose(is_cam1, is_cam)


def test_make_cams_with_checkpoint(tmp_path):
    checkpoint = pytest.importorskip("sipe.models.checkpoint")
    from sipe.stages.cams import make_cams

    manifest = make_dataset(tmp_path / "data")
    model = _real_net(len(CLASSES) - 1)
    checkpoint.save_model(tmp_path / "final.pth", model)
    params = {"cams": {"scales": [1.0, 0.5], "shards": 2, "overlay_samples": 2}}
    threads = torch.get_num_threads()
    for i in range(2):
        make_cams(params, tmp_path / "data", tmp_path / "final.pth", tmp_path / "maps", shard=(i, 2), workers=1,
                  device="cpu")
    assert torch.get_num_threads() == threads  # restored
    assert sorted(p.stem for p in (tmp_path / "maps").glob("*.npz")) == sorted(TRAIN_AUG)
    for image_id in manifest.ids("train_aug"):
        keys, cam, is_cam = load_maps(tmp_path / "maps" / f"{image_id}.npz")
        assert keys.tolist() == [0, *LABELS[image_id]]
        assert cam.dtype == np.float16 and is_cam.dtype == np.float16
        # the file holds the present rows of multiscale_maps on the saved weights, in float16
        image = np.asarray(Image.open(manifest.image_path("train_aug", image_id)).convert("RGB"))
        label = np.zeros(len(CLASSES), np.float32)
        label[keys] = 1
        full_cam, full_is_cam = multiscale_maps(model, image, label, scales=(1.0, 0.5))
        np.testing.assert_allclose(cam, full_cam[keys[1:] - 1], atol=1e-3)
        np.testing.assert_allclose(is_cam, full_is_cam[keys], atol=1e-3)
        assert cam.astype(np.float32).max() == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(SipeError, match="classes"):
        bad = _real_net(5)
        checkpoint.save_model(tmp_path / "bad.pth", bad)
        make_cams(params, tmp_path / "data", tmp_path / "bad.pth", tmp_path / "maps2", device="cpu")


def test_manifest_fixture(tmp_path):
    manifest = make_dataset(tmp_path / "data")
    assert isinstance(manifest, DatasetManifest) and manifest.ids("train") == ["img0", "img1", "img2"]
