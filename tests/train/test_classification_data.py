"""The classification dataset: samples, multi-hot labels, the valid mask (docs/method.md A.4) and its errors."""

from __future__ import annotations

import json

import pytest
import torch

from sipe.data.classification import ClassificationDataset, multi_hot, valid_mask_from
from sipe.data.manifest import DatasetManifest
from sipe.errors import DatasetError, SipeError


def test_sample_shapes_labels_and_valid_mask(tiny_data):
    manifest = DatasetManifest.load(tiny_data)
    labels = manifest.class_labels()
    ds = ClassificationDataset(manifest, "train_aug", crop=64, resize_long=(48, 96))
    assert len(ds) == 16 and ds.num_foreground == 4
    seen_padding = False
    for index in range(len(ds)):
        item = ds[index]
        assert item["id"] == ds.ids[index]
        assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
        expected = torch.zeros(4)
        expected[[c - 1 for c in labels[item["id"]]]] = 1
        assert torch.equal(item["label"], expected)
        content, valid = item["content"], item["valid_mask"]
        assert valid.shape == (5, 64, 64) and valid.dtype == torch.float32
        assert torch.equal(valid[0], content)  # channel 0: real pixels
        for c in range(1, 5):  # channel c: real pixels where class c is present, else all 0
            assert torch.equal(valid[c], content if expected[c - 1] else torch.zeros(64, 64))
        assert set(content.unique().tolist()) <= {0.0, 1.0}
        seen_padding |= bool((content == 0).any())
    assert seen_padding  # resize_long down to 48 < crop 64 pads some samples


def test_samples_are_a_function_of_the_generator_seed(tiny_data):
    ds = ClassificationDataset(DatasetManifest.load(tiny_data), crop=64, resize_long=(48, 96))
    a, b = ds.sample(3, torch.Generator().manual_seed(9)), ds.sample(3, torch.Generator().manual_seed(9))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["valid_mask"], b["valid_mask"])
    c = ds.sample(3, torch.Generator().manual_seed(10))
    assert not torch.equal(a["image"], c["image"])
    assert torch.equal(ds[5]["image"], ds[5]["image"])


def test_without_valid_mask_the_batch_helper_builds_the_same_mask(tiny_data):
    manifest = DatasetManifest.load(tiny_data)
    full = ClassificationDataset(manifest, crop=64, resize_long=(48, 96))
    lean = ClassificationDataset(manifest, crop=64, resize_long=(48, 96), with_valid_mask=False)
    items = [lean[i] for i in range(4)]
    assert "valid_mask" not in items[0]
    batch = valid_mask_from(torch.stack([i["content"] for i in items]), torch.stack([i["label"] for i in items]))
    assert batch.shape == (4, 5, 64, 64)
    assert torch.equal(batch, torch.stack([full[i]["valid_mask"] for i in range(4)]))


def test_multi_hot_maps_class_k_to_index_k_minus_1():
    assert multi_hot((1, 4), 5).tolist() == [1, 0, 0, 1, 0]
    assert multi_hot((), 3).tolist() == [0, 0, 0]


def test_id_without_labels_is_one_line_naming_the_labels_file(tiny_copy):
    manifest = DatasetManifest.load(tiny_copy)
    labels = json.loads(manifest.labels_file.read_text())
    victim = manifest.ids("train_aug")[2]
    del labels[victim]
    manifest.labels_file.write_text(json.dumps(labels))
    with pytest.raises(DatasetError) as info:
        ClassificationDataset(manifest)
    message = str(info.value)
    assert "\n" not in message and str(manifest.labels_file) in message and victim in message


def test_missing_image_is_one_line_naming_the_file(tiny_copy):
    manifest = DatasetManifest.load(tiny_copy)
    path = manifest.image_path("train_aug", manifest.ids("train_aug")[4])
    path.unlink()
    with pytest.raises(DatasetError) as info:
        ClassificationDataset(manifest)
    assert "\n" not in str(info.value) and str(path) in str(info.value) and "not found" in str(info.value)


def test_unreadable_image_is_one_line_naming_the_file(tiny_copy):
    manifest = DatasetManifest.load(tiny_copy)
    ds = ClassificationDataset(manifest)
    path = manifest.image_path("train_aug", ds.ids[1])
    path.write_bytes(b"not a jpeg at all")
    with pytest.raises(SipeError) as info:
        ds[1]
    assert "\n" not in str(info.value) and str(path) in str(info.value) and "cannot read image" in str(info.value)
