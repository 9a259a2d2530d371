"""The SIPE training augmentation (docs/method.md A.4) and the inference normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sipe.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TrainAugment,
    normalize_image,
    random_crop,
    random_crop_box,
    random_hflip,
    random_resize_long,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pil(height: int, width: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


# ---------------------------------------------------------------------------------------------
# random_resize_long
# ---------------------------------------------------------------------------------------------

def test_resize_long_side_covers_the_inclusive_range_and_keeps_the_aspect():
    image = pil(60, 100)
    longs = set()
    for seed in range(300):
        out = random_resize_long(image, 50, 60, gen(seed))
        w, h = out.size
        assert 50 <= w <= 60
        assert h == round(60 * w / 100)  # scale = L / max(H, W), size = round(H·s)
        longs.add(w)
    assert longs == set(range(50, 61))  # both ends included (randint semantics)


def test_resize_long_uses_the_longer_side_for_portrait_images_and_pil_bicubic():
    image = pil(90, 40)
    out = random_resize_long(image, 45, 45, gen(0))
    assert out.size == (20, 45)  # (W, H): 40·0.5, 90·0.5
    assert np.array_equal(np.asarray(out), np.asarray(image.resize((20, 45), Image.Resampling.BICUBIC)))


def test_resize_long_rejects_an_empty_range():
    with pytest.raises(ValueError, match="empty"):
        random_resize_long(pil(10, 10), 20, 10, gen(0))


# ---------------------------------------------------------------------------------------------
# normalize_image
# ---------------------------------------------------------------------------------------------

def test_normalize_image_uses_imagenet_mean_and_std():
    array = np.zeros((2, 3, 3), np.uint8)
    array[0, 0] = 255
    array[1, 2] = (124, 116, 104)
    out = normalize_image(array)
    assert out.dtype == torch.float32 and out.shape == (3, 2, 3)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out[:, 0, 0], (1 - mean) / std)
    torch.testing.assert_close(out[:, 0, 1], -mean / std)
    torch.testing.assert_close(out[:, 1, 2], (torch.tensor([124, 116, 104]) / 255 - mean) / std)


def test_normalize_image_accepts_pil_arrays_and_chw_tensors_alike():
    image = pil(7, 5, seed=3)
    array = np.asarray(image)
    a, b = normalize_image(image), normalize_image(array)
    c = normalize_image(torch.from_numpy(array.copy()).permute(2, 0, 1))
    assert torch.equal(a, b) and torch.equal(a, c)
    assert type(a) is torch.Tensor
    with pytest.raises(ValueError):
        normalize_image(array.astype(np.float32))


# ---------------------------------------------------------------------------------------------
# random_crop
# ---------------------------------------------------------------------------------------------

def test_crop_of_a_smaller_image_pastes_it_whole_at_a_random_offset():
    image = torch.arange(3 * 20 * 30, dtype=torch.float32).view(3, 20, 30) + 1
    offsets = set()
    for seed in range(200):
        out, content, box = random_crop(image, 40, gen(seed))
        assert out.shape == (3, 40, 40) and content.shape == (40, 40)
        assert (box.bottom - box.top, box.right - box.left) == (20, 30)
        assert 0 <= box.top <= 20 and 0 <= box.left <= 10 and (box.img_top, box.img_left) == (0, 0)
        assert torch.equal(out[:, box.top:box.bottom, box.left:box.right], image)
        expected = torch.zeros(40, 40)
        expected[box.top:box.bottom, box.left:box.right] = 1
        assert torch.equal(content, expected)
        assert out.sum() == image.sum()  # zero outside the content box
        offsets.add((box.top, box.left))
    tops, lefts = {t for t, _ in offsets}, {left for _, left in offsets}
    assert tops == set(range(21)) and lefts == set(range(11))  # every offset reachable, ends included


def test_crop_of_a_larger_image_takes_a_random_window_and_is_all_content():
    image = torch.randn(3, 50, 70, generator=gen(1))
    windows = set()
    for seed in range(300):
        out, content, box = random_crop(image, 40, gen(seed))
        assert (box.top, box.bottom, box.left, box.right) == (0, 40, 0, 40)
        assert 0 <= box.img_top <= 10 and 0 <= box.img_left <= 30
        assert torch.equal(out, image[:, box.img_top:box.img_top + 40, box.img_left:box.img_left + 40])
        assert torch.equal(content, torch.ones(40, 40))
        windows.add((box.img_top, box.img_left))
    assert {t for t, _ in windows} == set(range(11))


def test_crop_mixed_axes_and_exact_size():
    image = torch.randn(3, 30, 60, generator=gen(2))
    out, content, box = random_crop(image, 40, gen(5))
    assert (box.bottom - box.top, box.left, box.right) == (30, 0, 40)  # rows pasted, columns windowed
    assert torch.equal(out[:, box.top:box.bottom], image[:, :, box.img_left:box.img_left + 40])
    assert content.sum() == 30 * 40 and content[box.top:box.bottom].all()

    same = torch.randn(3, 40, 40, generator=gen(3))
    out, content, box = random_crop(same, 40, gen(9))
    assert box == random_crop_box(40, 40, 40, gen(0))  # no freedom at all
    assert torch.equal(out, same) and content.all()


# ---------------------------------------------------------------------------------------------
# flip and the whole augmentation
# ---------------------------------------------------------------------------------------------

def test_hflip_is_a_mirror_with_probability_one_half():
    image = torch.randn(3, 4, 5, generator=gen(0))
    flips = 0
    for seed in range(1000):
        out, flipped = random_hflip(image, gen(seed))
        assert torch.equal(out, image.flip(-1) if flipped else image)
        flips += flipped
    assert 440 <= flips <= 560  # Binomial(1000, 0.5): ±7.6 sd


def test_augment_equals_the_composed_steps_in_the_reference_order():
    image = pil(70, 90, seed=4)
    augment = TrainAugment(crop=64, resize_long=(48, 96))
    for seed in range(5):
        out, content = augment(image, gen(seed))
        g = gen(seed)
        x = normalize_image(random_resize_long(image, 48, 96, g))
        x, _ = random_hflip(x, g)
        x, mask, _ = random_crop(x, 64, g)
        assert torch.equal(out, x) and torch.equal(content, mask)
        assert out.shape == (3, 64, 64) and content.shape == (64, 64)
        assert torch.all(out[:, content == 0] == 0)  # padding is 0 = the mean colour


def test_augment_is_deterministic_for_a_seed_and_varies_across_seeds():
    image = pil(80, 60, seed=5)
    augment = TrainAugment(crop=64, resize_long=(48, 128))
    a, b = augment(image, gen(11)), augment(image, gen(11))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    outputs = {augment(image, gen(seed))[0].sum().item() for seed in range(10)}
    assert len(outputs) == 10
