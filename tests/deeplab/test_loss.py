"""DeepLab's training loss (docs/method.md G.2): cross-entropy with ignore 255 on every MSC output, labels
nearest-resized to each logit size."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from sipe.stages.deeplab import cross_entropy_ignore, deeplab_step, msc_loss, output_names, resize_labels


def _naive_ce(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over labelled pixels of −log softmax(logits)[label], pixel by pixel."""
    total, count = 0.0, 0
    n, c, h, w = logits.shape
    for b in range(n):
        for y in range(h):
            for x in range(w):
                k = int(labels[b, y, x])
                if k == 255:
                    continue
                z = logits[b, :, y, x].double()
                total += float(torch.logsumexp(z, 0) - z[k])
                count += 1
    return total / count


def test_cross_entropy_skips_ignored_pixels():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 6, generator=g)
    labels = torch.randint(0, 4, (2, 5, 6), generator=g)
    labels[0, :2] = 255
    labels[1, :, 4:] = 255
    assert math.isclose(float(cross_entropy_ignore(logits, labels)), _naive_ce(logits, labels), rel_tol=1e-5)
    # changing the logits of ignored pixels changes nothing
    moved = logits.clone()
    moved[0, :, :2] += 100.0
    assert float(cross_entropy_ignore(moved, labels)) == float(cross_entropy_ignore(logits, labels))


def test_all_ignored_gives_zero_loss_and_zero_gradient():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = cross_entropy_ignore(logits, torch.full((1, 4, 4), 255))
    loss.backward()
    assert float(loss.detach()) == 0.0 and float(logits.grad.abs().sum()) == 0.0


def test_label_resize_is_pil_nearest():
    rng = np.random.default_rng(1)
    label = rng.integers(0, 5, size=(37, 29)).astype(np.uint8)
    label[rng.random(label.shape) < 0.2] = 255
    for size in ((5, 4), (19, 15), (10, 23), (37, 29), (74, 58)):
        pil = np.asarray(Image.fromarray(label).resize(size[::-1], Image.Resampling.NEAREST))
        ours = resize_labels(torch.from_numpy(label.astype(np.int64))[None], size)[0].numpy()
        assert np.array_equal(ours, pil), size
    for side in (16, 41, 97):  # exact ties (16 -> 12, 16 -> 6) and long runs of accumulated rounding
        ramp = np.tile(np.arange(side, dtype=np.uint8), (3, 1))
        for n in range(1, 2 * side):
            pil = np.asarray(Image.fromarray(ramp).resize((n, 3), Image.Resampling.NEAREST))
            ours = resize_labels(torch.from_numpy(ramp.astype(np.int64))[None], (3, n))[0].numpy()
            assert np.array_equal(ours, pil), (side, n)


def test_msc_loss_sums_one_term_per_output():
    g = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 3, (2, 16, 16), generator=g)
    labels[:, :, :3] = 255
    outputs = [torch.randn(2, 3, s, s, generator=g) for s in (16, 8, 12, 16)]
    parts = msc_loss(outputs, labels)
    for logits, part in zip(outputs, parts):
        target = torch.from_numpy(np.stack([np.asarray(Image.fromarray(l.numpy().astype(np.uint8)).resize(
            logits.shape[-2:], Image.Resampling.NEAREST)) for l in labels]).astype(np.int64))
        assert math.isclose(float(part), _naive_ce(logits, target), rel_tol=1e-5)
    assert output_names((0.5, 0.75)) == ["loss_x1", "loss_x0.5", "loss_x0.75", "loss_max"]


def test_step_reports_the_sum_and_each_output():
    class Fixed(torch.nn.Module):
        def forward(self, x):
            return [x[:, :3], x[:, :3, ::2, ::2], x[:, :3, :6, :6], x[:, 1:4]]

    g = torch.Generator().manual_seed(3)
    batch = {"image": torch.randn(2, 4, 8, 8, generator=g), "label": torch.randint(0, 3, (2, 8, 8), generator=g)}
    losses = deeplab_step((0.5, 0.75))(Fixed(), batch)
    assert set(losses) == {"loss", "loss_x1", "loss_x0.5", "loss_x0.75", "loss_max"}
    assert math.isclose(float(losses["loss"]), sum(float(v) for k, v in losses.items() if k != "loss"), rel_tol=1e-6)
