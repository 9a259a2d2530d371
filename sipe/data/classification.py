"""Image-level classification samples for training the SIPE network (docs/method.md A.4).

One sample is a dict::

    image       float32 [3, crop, crop]   augmented, normalised, zero-padded
    label       float32 [C]               multi-hot, index k = class k + 1 (no background)
    content     float32 [crop, crop]      1 where the container holds image pixels
    valid_mask  float32 [C+1, crop, crop] channel 0 = content, channel c = content · label[c-1]
                                          (docs/method.md A.4 ``valid_mask[:, 1:] *= label``); omitted with
                                          ``with_valid_mask=False`` (build it on the device with
                                          :func:`valid_mask_from` instead: C+1 full-size planes per
                                          sample are a lot to pass between loader processes)
    id          str

Randomness: :meth:`ClassificationDataset.sample` takes an explicit ``torch.Generator`` (the
training loop seeds it per (seed, epoch, index)); ``dataset[i]`` uses a generator seeded with ``i``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from sipe.data.manifest import DatasetManifest
from sipe.data.transforms import TrainAugment
from sipe.errors import DatasetError, first_offenders


def multi_hot(classes: tuple[int, ...] | list[int], num_foreground: int) -> torch.Tensor:
    """Foreground class indices 1..C → float32 multi-hot [C] (index k = class k + 1, docs/method.md A.2)."""
    label = torch.zeros(num_foreground, dtype=torch.float32)
    for c in classes:
        label[c - 1] = 1.0
    return label


def valid_mask_from(content: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """content [..., H, W] and label [..., C] → valid mask [..., C+1, H, W] (docs/method.md A.4).

    Channel 0 is "pixel is real image"; channel c ≥ 1 is "pixel is real and class c is present".
    Works for one sample or a batch.
    """
    label21 = torch.cat([torch.ones_like(label[..., :1]), label], dim=-1)
    return content.unsqueeze(-3) * label21[..., None, None].to(content.dtype)


def load_rgb(path: Path) -> Image.Image:
    """Open an image as RGB (PIL ``.convert("RGB")``, docs/method.md A.3); one-line :class:`DatasetError` if it fails."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise DatasetError(f"{path}: image not found") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{path}: cannot read image ({type(exc).__name__}: {exc})".replace("\n", " ")) from None


class ClassificationDataset(Dataset):
    """The ``split`` images of a prepared dataset with their image-level labels, augmented for training.

    Checked up front (one-line :class:`DatasetError`): ids without labels and missing image files.
    Unreadable images are reported when they are loaded.
    """

    def __init__(self, manifest: DatasetManifest, split: str = "train_aug", crop: int = 512,
                 resize_long: tuple[int, int] = (320, 640), with_valid_mask: bool = True):
        self.manifest = manifest
        self.split = split
        self.ids = manifest.ids(split)
        self.num_foreground = manifest.num_classes - 1
        self.augment = TrainAugment(crop=crop, resize_long=(int(resize_long[0]), int(resize_long[1])))
        self.with_valid_mask = with_valid_mask

        labels = manifest.class_labels()
        unlabelled = [i for i in self.ids if i not in labels]
        if unlabelled:
            raise DatasetError(f"{manifest.labels_file}: no class labels for {len(unlabelled)} {split} ids: "
                               f"{first_offenders(unlabelled)}")
        self.labels = torch.stack([multi_hot(labels[i], self.num_foreground) for i in self.ids]) \
            if self.ids else torch.zeros(0, self.num_foreground)
        self.paths = [manifest.image_path(split, i) for i in self.ids]
        missing = [str(p) for p in self.paths if not p.is_file()]
        if missing:
            raise DatasetError(f"{missing[0]}: image not found"
                               + (f" (and {len(missing) - 1} more {split} images)" if len(missing) > 1 else ""))

    def __len__(self) -> int:
        return len(self.ids)

    def sample(self, index: int, generator: torch.Generator) -> dict:
        """Sample ``index`` augmented with the draws of ``generator``."""
        image, content = self.augment(load_rgb(self.paths[index]), generator)
        label = self.labels[index].clone()
        item = {"image": image, "label": label, "content": content, "id": self.ids[index]}
        if self.with_valid_mask:
            item["valid_mask"] = valid_mask_from(content, label)
        return item

    def __getitem__(self, index: int) -> dict:
        return self.sample(index, torch.Generator().manual_seed(int(index)))
