"""Image transforms: the SIPE training augmentation (docs/method.md A.4) and the inference normalisation (docs/method.md A.5).

Training order, as in the reference: uint8 RGB → :func:`random_resize_long` → :func:`normalize_image`
→ :func:`random_hflip` → :func:`random_crop` (into a zero container, with the content mask) → CHW.

Every random draw comes from an explicit :class:`torch.Generator`, never from a global RNG, so one
sample's augmentation is a pure function of the generator's seed (the training loop seeds it from
(seed, epoch, index), which makes a resumed run replay exactly the same crops).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """A uniform integer in [low, high], both ends included."""
    return int(torch.randint(low, high + 1, (1,), generator=generator).item())


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(round(H·s), round(W·s)), at least 1 pixel each (docs/method.md A.4/A.5 ``pil_rescale``)."""
    return max(1, round(height * scale)), max(1, round(width * scale))


def random_resize_long(image: Image.Image, low: int, high: int, generator: torch.Generator) -> Image.Image:
    """Rescale so the longer side is L = randint(low, high) (inclusive), PIL bicubic (docs/method.md A.4)."""
    if low > high:
        raise ValueError(f"resize_long range is empty: {low} > {high}")
    target = _randint(low, high, generator)
    width, height = image.size
    new_h, new_w = scaled_size(height, width, target / max(height, width))
    if (new_h, new_w) == (height, width):
        return image
    return image.resize((new_w, new_h), Image.Resampling.BICUBIC)


def normalize_image(image: np.ndarray | Image.Image | torch.Tensor) -> torch.Tensor:
    """uint8 RGB (HWC array or PIL image, or a CHW uint8 tensor) → float32 [3,H,W], (x/255 − mean)/std.

    The ImageNet mean/std of docs/method.md A.4; inference (docs/method.md A.5) uses the same function.
    """
    if isinstance(image, Image.Image):
        tensor = TF.pil_to_tensor(image.convert("RGB"))
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected a uint8 [H,W,3] image, got {image.dtype} {image.shape}")
        tensor = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)
    else:
        tensor = image
        if tensor.dtype != torch.uint8 or tensor.ndim != 3 or tensor.shape[0] != 3:
            raise ValueError(f"expected a uint8 [3,H,W] tensor, got {tensor.dtype} {tuple(tensor.shape)}")
    tensor = TF.to_dtype(tv_tensors.Image(tensor), torch.float32, scale=True)
    return TF.normalize(tensor, list(IMAGENET_MEAN), list(IMAGENET_STD)).as_subclass(torch.Tensor)


def random_hflip(image: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> tuple[torch.Tensor, bool]:
    """Mirror left-right with probability ``p``; returns (image, flipped)."""
    flipped = bool(torch.rand((), generator=generator).item() < p)
    return (TF.horizontal_flip(image) if flipped else image), flipped


@dataclass(frozen=True)
class CropBox:
    """Where image content sits in the ``crop`` × ``crop`` container, and which image window it is.

    Container rows [top, bottom) and columns [left, right) hold image rows [img_top, img_top + bottom − top)
    and columns [img_left, img_left + right − left) (docs/method.md A.4 ``cont_top, cont_bottom, cont_left, cont_right``).
    """

    top: int
    bottom: int
    left: int
    right: int
    img_top: int
    img_left: int


def random_crop_box(height: int, width: int, crop: int, generator: torch.Generator) -> CropBox:
    """The reference's random crop box (IRN ``get_random_crop_box``), per axis.

    Image side > crop: a random window of the image fills the container. Image side ≤ crop: the whole
    side is pasted at a random offset in the container. Draws the row offset first, then the column.
    """
    def axis(size: int) -> tuple[int, int, int]:  # (container start, container end, image start)
        space = size - crop
        if space > 0:
            return 0, crop, _randint(0, space, generator)
        start = _randint(0, -space, generator)
        return start, start + size, 0

    top, bottom, img_top = axis(height)
    left, right, img_left = axis(width)
    return CropBox(top, bottom, left, right, img_top, img_left)


def random_crop(image: torch.Tensor, crop: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, CropBox]:
    """Crop/pad a [3,H,W] image into a zero-filled [3,crop,crop] container (docs/method.md A.4).

    Returns (image, content mask [crop,crop] float 1 inside the content box and 0 in the padding, box).
    Zero is the mean colour once the image is normalised.
    """
    height, width = image.shape[-2:]
    box = random_crop_box(height, width, crop, generator)
    # A crop window that starts above/left of the image, or runs past it, is zero-padded by
    # torchvision, which puts the content exactly at the box.
    top, left = box.img_top - box.top, box.img_left - box.left
    out = TF.crop(image, top, left, crop, crop)
    content = TF.crop(tv_tensors.Mask(torch.ones(1, height, width)), top, left, crop, crop)
    return out.as_subclass(torch.Tensor), content[0].as_subclass(torch.Tensor), box


@dataclass(frozen=True)
class TrainAugment:
    """The SIPE classifier's training augmentation (docs/method.md A.4) for one PIL RGB image.

    ``augment(image, generator)`` → (image float32 [3,crop,crop], content mask float32 [crop,crop]).
    The generator's draws, in order: long side L, flip, crop row offset, crop column offset.
    """

    crop: int = 512
    resize_long: tuple[int, int] = (320, 640)
    flip_p: float = 0.5

    def __call__(self, image: Image.Image, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        image = random_resize_long(image, self.resize_long[0], self.resize_long[1], generator)
        tensor = normalize_image(image)
        tensor, _ = random_hflip(tensor, generator, self.flip_p)
        tensor, content, _ = random_crop(tensor, self.crop, generator)
        return tensor, content
