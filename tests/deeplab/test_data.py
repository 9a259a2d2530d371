"""DeepLab's training samples (docs/method.md G.2): input encodings, scale / pad / crop / flip, label checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sipe.data.manifest import DatasetManifest
from sipe.data.segmentation import (
    CAFFE_MEAN_BGR,
    PseudoLabelDataset,
    SegAugment,
    normalize_for,
    pad_and_crop,
    random_scale,
)
from sipe.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from sipe.errors import DatasetError
from sipe.io import save_label_png
from tests.cams.tiny import make_dataset


def test_input_encodings():
    image = np.zeros((2, 3, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 120, 250  # R, G, B
    caffe = normalize_for(image, "caffe")
    assert caffe.shape == (3, 2, 3)
    assert torch.allclose(caffe[:, 0, 0], torch.tensor([250 - CAFFE_MEAN_BGR[0], 120 - CAFFE_MEAN_BGR[1],
                                                        10 - CAFFE_MEAN_BGR[2]]))
    tv = normalize_for(image, "torchvision")
    expected = [(v / 255 - m) / s for v, m, s in zip((10, 120, 250), IMAGENET_MEAN, IMAGENET_STD)]
    assert torch.allclose(tv[:, 1, 2], torch.tensor(expected), atol=1e-6)
    with pytest.raises(ValueError, match="unknown input style"):
        normalize_for(image, "bgr")


def test_scale_truncates_the_size_and_keeps_label_values():
    label = np.random.default_rng(0).choice(np.array([0, 3, 255], np.uint8), size=(21, 15))
    image = torch.randn(3, 21, 15)
    for draw in range(8):
        out_image, out_label = random_scale(image, label, (0.5, 0.75, 1.25), torch.Generator().manual_seed(draw))
        assert out_image.shape[1:] == out_label.shape and set(np.unique(out_label)) <= {0, 3, 255}
    sizes = {random_scale(image, label, (0.5, 0.75, 1.25), torch.Generator().manual_seed(d))[1].shape for d in range(40)}
    assert sizes == {(10, 7), (15, 11), (26, 18)}  # int() truncation: 21·0.75 = 15.75 -> 15


def test_pad_and_crop_fill_values_and_windows():
    image = torch.ones(3, 5, 40)
    label = np.ones((5, 40), np.uint8)
    out_image, out_label = pad_and_crop(image, label, 8, torch.Generator().manual_seed(1))
    assert out_image.shape == (3, 8, 8) and out_label.shape == (8, 8)
    # the image sits at the top (padding goes to the bottom): rows 5..7 are mean colour (0) and ignore
    assert torch.all(out_image[:, :5] == 1) and torch.all(out_image[:, 5:] == 0)
    assert np.all(out_label[:5] == 1) and np.all(out_label[5:] == 255)


def test_augmentation_keeps_image_and_label_aligned():
    """Each class has its own colour; after scale 1, crop and flip every labelled pixel still has its colour."""
    rng = np.random.default_rng(2)
    label = rng.integers(0, 3, size=(30, 50)).astype(np.uint8)
    colours = np.array([[0, 0, 0], [200, 30, 30], [30, 30, 200]], np.uint8)
    image = colours[label]
    augment = SegAugment(crop=24, scales=(1.0,), style="caffe")
    flips = 0
    for draw in range(12):
        tensor, target = augment(image, label, torch.Generator().manual_seed(draw))
        assert tensor.shape == (3, 24, 24) and target.dtype == torch.int64 and target.shape == (24, 24)
        expected = normalize_for(colours[target.numpy()], "caffe")
        assert torch.allclose(tensor, expected)
        flips += int(not np.array_equal(target.numpy(), label[:24, :24]))
    assert flips > 0


def test_same_seed_same_sample(tmp_path):
    manifest = make_dataset(tmp_path / "data")
    labels = tmp_path / "labels"
    for image_id in manifest.ids("train_aug"):
        mask = np.asarray(Image.open(manifest.mask_path("train_aug", image_id)))
        save_label_png(labels / f"{image_id}.png", mask)
    dataset = PseudoLabelDataset(manifest, labels, augment=SegAugment(crop=12, scales=(0.75, 1.0, 1.5)))
    assert len(dataset) == 4
    a = dataset.sample(1, torch.Generator().manual_seed(7))
    b = dataset.sample(1, torch.Generator().manual_seed(7))
    assert a["id"] == "img1" and torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert set(torch.unique(a["label"]).tolist()) <= {0, 3, 255}


def test_bad_label_folders_are_reported(tmp_path):
    manifest = make_dataset(tmp_path / "data")
    labels = tmp_path / "labels"
    save_label_png(labels / "img0.png", np.zeros((12, 16), np.uint8))
    with pytest.raises(DatasetError, match=r"labels: no label PNG for 3 of 4 images: img1, img2, img3"):
        PseudoLabelDataset(manifest, labels)
    for image_id, shape in (("img1", (10, 14)), ("img2", (16, 12)), ("img3", (14, 14))):
        save_label_png(labels / f"{image_id}.png", np.zeros(shape, np.uint8))
    save_label_png(labels / "img2.png", np.full((16, 12), 9, np.uint8))
    save_label_png(labels / "img3.png", np.zeros((13, 14), np.uint8))
    dataset = PseudoLabelDataset(DatasetManifest.load(tmp_path / "data"), labels)
    with pytest.raises(DatasetError, match=r"img2.png: label values outside 0..3 and 255: 9"):
        dataset.sample(2, torch.Generator())
    with pytest.raises(DatasetError, match=r"img3.png: label size \(13, 14\) != image size \(14, 14\)"):
        dataset.sample(3, torch.Generator())
