"""IRN training samples: images with their IR labels, augmented together (docs/method.md F.4).

Order, as in the reference: random scale s ~ U(low, high) (image PIL bicubic, labels PIL nearest,
size (round(H·s), round(W·s))) → ImageNet normalisation → the same random h-flip for both →
the same random crop (image into a zero container, labels into a 255 container) → labels reduced
×¼ by PIL nearest to the stride-4 grid of the crop. One sample is a dict::

    image   float32 [3, crop, crop]
    labels  int64   [crop/4, crop/4]   0..C, 255 = no pair label (uncertain or padding)
    id      str

The pair labels (docs/method.md F.4) are built from ``labels`` on the training device
(:func:`sipe.refine.path_index.affinity_labels`), which keeps what workers pass around small.
Randomness comes from an explicit generator (:meth:`AffinityDataset.sample`), drawn in the order
scale, flip, crop row, crop column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from sipe.data.classification import load_rgb
from sipe.data.manifest import DatasetManifest
from sipe.data.transforms import normalize_image, random_crop, random_hflip, scaled_size
from sipe.errors import DatasetError, first_offenders
from sipe.io import IGNORE_INDEX, read_label_of_size


class AffinityDataset(Dataset):
    """The ``split`` images of a prepared dataset with the IR labels in ``labels_dir`` (``<id>.png``).

    Checked up front (one-line :class:`DatasetError`): missing label files. Size mismatches and
    unreadable files are reported when a sample is loaded.
    """

    def __init__(self, manifest: DatasetManifest, labels_dir: Path, split: str = "train_aug", crop: int = 512,
                 scale_range: tuple[float, float] = (0.5, 1.5)):
        if crop % 4:
            raise ValueError(f"crop must be a multiple of 4, got {crop}")
        self.ids = manifest.ids(split)
        self.images = [manifest.image_path(split, i) for i in self.ids]
        self.labels = [Path(labels_dir) / f"{i}.png" for i in self.ids]
        missing = [i for i, p in zip(self.ids, self.labels) if not p.is_file()]
        if missing:
            raise DatasetError(f"{labels_dir}: no label PNG for {len(missing)} of {len(self.ids)} {split} ids: "
                               f"{first_offenders(missing)} (run ir-labels first)")
        self.crop = int(crop)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))

    def __len__(self) -> int:
        return len(self.ids)

    def sample(self, index: int, generator: torch.Generator) -> dict:
        image = load_rgb(self.images[index])
        labels = read_label_of_size(self.labels[index], (image.height, image.width), self.images[index])
        low, high = self.scale_range
        scale = low + float(torch.rand((), generator=generator)) * (high - low)
        height, width = scaled_size(image.height, image.width, scale)
        if (height, width) != (image.height, image.width):
            image = image.resize((width, height), Image.Resampling.BICUBIC)
            labels = np.asarray(Image.fromarray(labels).resize((width, height), Image.Resampling.NEAREST))
        tensor, flipped = random_hflip(normalize_image(image), generator)
        if flipped:
            labels = labels[:, ::-1]
        tensor, _, box = random_crop(tensor, self.crop, generator)
        cropped = np.full((self.crop, self.crop), IGNORE_INDEX, dtype=np.uint8)
        cropped[box.top:box.bottom, box.left:box.right] = labels[box.img_top:box.img_top + box.bottom - box.top,
                                                                 box.img_left:box.img_left + box.right - box.left]
        size4 = self.crop // 4
        reduced = np.asarray(Image.fromarray(cropped).resize((size4, size4), Image.Resampling.NEAREST))
        return {"image": tensor, "labels": torch.from_numpy(reduced.astype(np.int64)), "id": self.ids[index]}

    def __getitem__(self, index: int) -> dict:
        return self.sample(index, torch.Generator().manual_seed(int(index)))
