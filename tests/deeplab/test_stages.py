"""The DeepLab stages end to end on a tiny dataset: training (resumable), sharded segmentation with flip
and CRF, the VOC server layout, evaluation and the picture sheet."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from sipe.data.manifest import DatasetManifest
from sipe.errors import ConfigError
from sipe.stages.deeplab import VOC_SERVER_DIR, eval_seg, label_sheet, segment, train_deeplab
from sipe.stages.shards import gather
from sipe.viz import contact_sheet_size
from tests.tiny import tiny_deeplab_params


class Stop(Exception):
    pass


def _stop_at(step):
    def on_step(done, row):
        if done == step:
            raise Stop

    return on_step


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    """A 4-step run with the GT masks (255 borders included) as the pseudo labels."""
    out = tmp_path_factory.mktemp("deeplab")
    labels = DatasetManifest.load(tiny_data).split("train_aug").mask_dir
    train_deeplab(tiny_deeplab_params(), tiny_data, labels, out, workers=1, device="cpu")
    return out


def test_training_outputs(trained):
    steps = pd.read_csv(trained / "train/steps.csv")
    assert steps.columns.tolist()[:8] == ["step", "epoch", "lr", "loss", "loss_x1", "loss_x0.5", "loss_x0.75",
                                          "loss_max"]
    assert steps["step"].tolist() == [1, 2, 3, 4] and steps["lr"].nunique() == 2  # lr_every 2
    assert np.allclose(steps["loss"], steps[["loss_x1", "loss_x0.5", "loss_x0.75", "loss_max"]].sum(axis=1), rtol=1e-5)
    summary = json.loads((trained / "train/train.json").read_text())
    assert summary["config"]["accumulate"] == 2 and summary["config"]["batch_size"] == 4
    assert (trained / "train/loss.png").read_bytes()[:4] == b"\x89PNG" and not (trained / "resume.pt").exists()


def test_resumed_training_gives_the_same_weights(trained, tiny_data, tmp_path):
    labels = DatasetManifest.load(tiny_data).split("train_aug").mask_dir
    with pytest.raises(Stop):
        train_deeplab(tiny_deeplab_params(), tiny_data, labels, tmp_path, workers=1, device="cpu", on_step=_stop_at(3))
    assert (tmp_path / "resume.pt").exists() and not (tmp_path / "model.pt").exists()
    train_deeplab(tiny_deeplab_params(), tiny_data, labels, tmp_path, workers=1, device="cpu")
    a = torch.load(trained / "model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert pd.read_csv(tmp_path / "train/steps.csv")["step"].tolist() == [1, 2, 3, 4]


def test_pretrain_weights_need_the_file_and_the_same_backbone(tiny_data, tmp_path):
    labels = DatasetManifest.load(tiny_data).split("train_aug").mask_dir
    with pytest.raises(ConfigError, match="give the pre-trained backbone file with --init"):
        train_deeplab(tiny_deeplab_params(weights="pretrain"), tiny_data, labels, tmp_path, workers=1)
    with pytest.raises(ConfigError, match="deeplab.backbone resnet34 differs from sipe.backbone resnet18"):
        train_deeplab(tiny_deeplab_params(weights="pretrain", backbone="resnet34"), tiny_data, labels, tmp_path,
                      workers=1, init=tmp_path / "backbone.pth")


def test_sharded_segmentation_evaluation_and_sheet(trained, tiny_data, tmp_path):
    params = tiny_deeplab_params()
    for shard in ((0, 2), (1, 2)):
        segment(params, tiny_data, trained / "model.pt", tmp_path / "val", "val", shard=shard, device="cpu")
    manifest = DatasetManifest.load(tiny_data)
    ids = manifest.ids("val")
    for kind in ("pred", "crf"):
        gather(tmp_path / "val" / kind, ids, ".png", "val")  # the gather rule's check: every image is there
        for image_id in ids:
            with Image.open(tmp_path / "val" / kind / f"{image_id}.png") as png, \
                    Image.open(manifest.image_path("val", image_id)) as image:
                assert png.mode == "P" and png.size == image.size
                assert int(np.asarray(png).max()) < manifest.num_classes
    assert json.loads((tmp_path / "val/shards/2-of-2.json").read_text())["ids"] == ids[1::2]
    scores = eval_seg(tiny_data, tmp_path / "val/crf", tmp_path / "eval")
    assert 0.0 <= scores["mIoU"] <= 1.0 and (tmp_path / "eval/per_class.csv").is_file()
    label_sheet(tiny_data, "val", [tmp_path / "val/pred", tmp_path / "val/crf"], ["MSC", "CRF"],
                tmp_path / "sheet.png", samples=2)
    with Image.open(tmp_path / "sheet.png") as sheet:
        grid = contact_sheet_size(2 * 3, columns=3)
        assert sheet.width == grid[0] and sheet.height > grid[1]  # the grid, then the legend of the class colours


def test_test_split_goes_to_the_server_layout(trained, tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    manifest = json.loads((data / "dataset.json").read_text())
    manifest["splits"]["test"] = {**manifest["splits"]["val"], "masks": None}  # VOC test: images only
    (data / "dataset.json").write_text(json.dumps(manifest))
    segment(tiny_deeplab_params(flip=False), data, trained / "model.pt", tmp_path / "test", "test", device="cpu")
    server = tmp_path / "test" / VOC_SERVER_DIR
    assert VOC_SERVER_DIR == "results/VOC2012/Segmentation/comp6_test_cls"
    ids = DatasetManifest.load(data).ids("test")
    assert sorted(p.stem for p in server.glob("*.png")) == sorted(ids)
    assert not (tmp_path / "test/pred").exists() and json.loads((server / "index.json").read_text())["count"] == 4
