"""The embedded default dataset: synthetic "creatures" in VOC 2012 layout, generated from a seed.

Why it looks the way it does
----------------------------
SIPE's argument (the paper's cat) is that a classifier's CAM fires on the small part that tells
classes apart (the cat's head) and misses the larger, less discriminative body, while
image-specific prototypes, built from the feature similarity *within one image*, recover the
body. Every object here is built to make that visible:

* a **body**: a slightly wobbly ellipse (random axes, rotation, scale) whose base colour is drawn
  per *instance* from a shared range of vivid colours (any hue, saturation 0.30-0.65), shaded and
  covered by a fine "fur" texture common to all classes. Bodies therefore say nothing about the
  class; headless, marker-free blobs of the same kind ("distractors", labelled background) make
  sure that even "being a vivid body" is no clue. The background is muted, so a body stands out
  from it by its look, as real objects do in generic (ImageNet-like) features: when bodies were
  muted like the background, even prototypes of a perfectly seeded head did not reach the body
  and IS-CAM trailed the CAM (docs/datasets.md);
* a **head** (the *part*, about 14-22 % of the object): a disc attached at the body's rim, showing
  the same instance colour and fur as its body (so features link part and body), with a small
  **class marker** drawn on it: a saturated colour and a pattern. Only the marker tells classes
  apart.

Classes (index: name = marker colour-pattern; ``num_classes`` takes the first ones)::

     1 red-ring        2 green-cross     3 blue-stripes    4 yellow-dots
     5 magenta-checker 6 cyan-diamond    7 red-dots        8 green-checker
     9 blue-diamond   10 yellow-ring    11 magenta-cross  12 cyan-stripes
    13 red-stripes    14 green-diamond  15 blue-ring      16 yellow-checker
    17 magenta-dots   18 cyan-cross     19 red-checker    20 green-ring

The first six classes differ in colour *and* pattern; classes 7-20 reuse a colour with another
pattern, so from seven classes on the pattern matters too. Twenty classes give a set with VOC's
class count (the VOC-scale rehearsal, docs/scaling.md).

Image sizes (``sizes``): ``uniform`` draws height and width independently from
[``min_side``, ``max_side``]; ``voc`` imitates PASCAL VOC, whose images have a long side of 500 px:
the long side is ``max_side``, the short side is drawn from [``min_side``, ``max_side``], and one
image in four is portrait.

Images hold 1..``max_objects`` objects (geometric-like weights favouring one or two; later objects
reuse an earlier class with probability 0.25, which gives about 1.5 foreground classes per image as
in VOC). Later objects may occlude earlier ones, but every object keeps at least half of its head
and 30 % of its pixels visible (a candidate placement that breaks this is redrawn, at most
``PLACEMENT_TRIES`` times, then dropped). Objects may be cut by the image border (the head stays at
least half inside). Backgrounds are cluttered: smooth low-frequency colour noise, stripes, textured
patches, up to ``distractors`` body-like blobs and small spots in hues no marker uses (orange,
chartreuse, spring green, azure, violet, rose).

Masks are exact per pixel (a pixel belongs to the topmost shape whose anti-aliasing coverage is
above one half); a band of ``border`` pixels along every object's boundary (object/background and
object/object) is 255, like VOC's void outline.

Reproducibility: image ``i`` of split ``s`` draws all of its randomness from
``numpy.random.default_rng([seed, split_code(s), i])``, so the files are byte-identical for the same
seed whatever the number of worker processes.
"""

from __future__ import annotations

import colorsys
import math
import multiprocessing
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

from sipe.data.manifest import DatasetManifest, Split
from sipe.errors import ConfigError
from sipe.io import IGNORE_INDEX, save_label_png, write_json, write_text

# ----------------------------------------------------------------------------------------------
# Classes
# ----------------------------------------------------------------------------------------------

MARKER_COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.88, 0.10, 0.10),
    "green": (0.08, 0.75, 0.15),
    "blue": (0.12, 0.25, 0.92),
    "yellow": (0.95, 0.85, 0.08),
    "magenta": (0.85, 0.12, 0.80),
    "cyan": (0.08, 0.80, 0.85),
}
PATTERNS = ("ring", "cross", "stripes", "dots", "checker", "diamond")
CLASS_TABLE: tuple[tuple[str, str], ...] = (
    ("red", "ring"), ("green", "cross"), ("blue", "stripes"), ("yellow", "dots"),
    ("magenta", "checker"), ("cyan", "diamond"), ("red", "dots"), ("green", "checker"),
    ("blue", "diamond"), ("yellow", "ring"), ("magenta", "cross"), ("cyan", "stripes"),
    ("red", "stripes"), ("green", "diamond"), ("blue", "ring"), ("yellow", "checker"),
    ("magenta", "dots"), ("cyan", "cross"), ("red", "checker"), ("green", "ring"),
)
MAX_CLASSES = len(CLASS_TABLE)
# Hues (degrees) halfway between the marker hues: colours of the clutter spots.
SPOT_HUES = (30.0, 90.0, 150.0, 210.0, 270.0, 330.0)

SPLIT_CODES = {"train_aug": 0, "val": 1}
SPLIT_PREFIX = {"train_aug": "syn_train", "val": "syn_val"}
REQUIRED_KEYS = ("seed", "num_classes", "train_aug", "train", "val", "min_side", "max_side",
                 "max_objects", "distractors", "border", "jpeg_quality")
SIZE_MODELS = ("uniform", "voc")
PORTRAIT = 0.25                # share of portrait images under ``sizes: voc``
PLACEMENT_TRIES = 25
MIN_HEAD_RADIUS = 9.0          # pixels: below this a marker pattern is no longer legible
BODY_SCALE = (0.25, 0.45)      # semi-major axis of the body as a fraction of the short side
BODY_ASPECT = (0.5, 0.8)       # minor / major axis
PART_FRACTION = (0.14, 0.22)   # head disc area / (body + head) area, before overlap
REUSE_CLASS = 0.25             # probability that a further object repeats an earlier class
OBJECT_DECAY = 0.6             # weight of n objects is OBJECT_DECAY ** (n - 1)


def class_names(num_classes: int) -> list[str]:
    """Names of the first ``num_classes`` foreground classes (``"red-ring"``, ...)."""
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ConfigError(f"synthetic.num_classes: must be in 1..{MAX_CLASSES}, got {num_classes}")
    return [f"{colour}-{pattern}" for colour, pattern in CLASS_TABLE[:num_classes]]


def image_id(split: str, index: int) -> str:
    """The id of image ``index`` of ``split`` (``syn_train_000123``, ``syn_val_000045``)."""
    return f"{SPLIT_PREFIX[split]}_{index:06d}"


def check_settings(settings: dict) -> dict:
    """Check the ``synthetic`` section (types, ranges, cross-field rules); raise :class:`ConfigError`."""
    missing = [k for k in REQUIRED_KEYS if k not in settings]
    if missing:
        raise ConfigError(f"synthetic: missing key(s): {', '.join(missing)}")
    for key in REQUIRED_KEYS:
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(f"synthetic.{key}: must be an integer, got {value!r}")
    s = {k: int(settings[k]) for k in REQUIRED_KEYS}
    s["sizes"] = settings.get("sizes", "uniform")
    if s["sizes"] not in SIZE_MODELS:
        raise ConfigError(f"synthetic.sizes: must be one of {', '.join(SIZE_MODELS)}, got {s['sizes']!r}")
    limits = {"seed": (0, None), "num_classes": (1, MAX_CLASSES), "train_aug": (1, None), "train": (1, None),
              "val": (1, None), "min_side": (48, 1024), "max_side": (48, 1024), "max_objects": (1, 8),
              "distractors": (0, 16), "border": (0, 8), "jpeg_quality": (50, 100)}
    for key, (lo, hi) in limits.items():
        if s[key] < lo or (hi is not None and s[key] > hi):
            rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise ConfigError(f"synthetic.{key}: must be {rng}, got {s[key]}")
    if s["train"] > s["train_aug"]:
        raise ConfigError(f"synthetic.train: {s['train']} exceeds synthetic.train_aug ({s['train_aug']})")
    if s["min_side"] > s["max_side"]:
        raise ConfigError(f"synthetic.min_side: {s['min_side']} exceeds synthetic.max_side ({s['max_side']})")
    return s


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------

@dataclass
class ObjectInfo:
    """One placed object. Pixel counts and masks describe what is *visible* in the final image
    (before the 255 border band); masks are full-image boolean arrays."""

    instance: int
    class_index: int
    class_name: str
    semi_axes: tuple[float, float]
    head_radius: float
    object_pixels: int = 0
    part_pixels: int = 0
    marker_pixels: int = 0
    body_mask: np.ndarray | None = field(default=None, repr=False)
    part_mask: np.ndarray | None = field(default=None, repr=False)
    marker_mask: np.ndarray | None = field(default=None, repr=False)

    @property
    def part_fraction(self) -> float:
        return self.part_pixels / self.object_pixels if self.object_pixels else 0.0


@dataclass
class SyntheticSample:
    """A rendered image: ``image`` uint8 [H,W,3], ``label`` uint8 [H,W] (0..C, 255), objects, labels."""

    image: np.ndarray
    label: np.ndarray
    objects: list[ObjectInfo]
    classes: list[int]


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def _muted(rng: np.random.Generator) -> np.ndarray:
    """A muted colour (low saturation, mid value): backgrounds and their clutter."""
    return _hsv(rng.uniform(0, 1), rng.uniform(0.06, 0.38), rng.uniform(0.32, 0.82))


def _vivid(rng: np.random.Generator) -> np.ndarray:
    """A vivid instance colour (any hue, saturation 0.30-0.65): bodies of objects and distractors."""
    return _hsv(rng.uniform(0, 1), rng.uniform(0.30, 0.65), rng.uniform(0.45, 0.85))


def _window(cx: float, cy: float, radius: float, height: int, width: int):
    """Row/column slices of the pixels within ``radius`` of (cx, cy), clipped; None if empty."""
    x0, x1 = max(int(math.floor(cx - radius)) - 1, 0), min(int(math.ceil(cx + radius)) + 2, width)
    y0, y1 = max(int(math.floor(cy - radius)) - 1, 0), min(int(math.ceil(cy + radius)) + 2, height)
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


def _grids(win) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates of a window, as broadcastable column (y) and row (x) vectors."""
    ys, xs = win
    return (np.arange(ys.start, ys.stop, dtype=np.float32)[:, None],
            np.arange(xs.start, xs.stop, dtype=np.float32)[None, :])


def _ellipse(y, x, cx, cy, a, b, theta, wobble=()):
    """Body-frame coordinates (u, v), normalised radius ``d`` (inside where d < 1) and coverage alpha.

    ``wobble`` holds (order, amplitude, phase) harmonics that bend the outline into a blob. Alpha is
    a one-pixel anti-aliasing ramp from an estimate of the distance to the outline; alpha > 0.5
    exactly where d < 1, so masks and pixels agree.
    """
    c, s = math.cos(theta), math.sin(theta)
    dx, dy = x - cx, y - cy
    u = dx * c + dy * s
    v = -dx * s + dy * c
    d0 = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    scale = np.ones_like(d0)
    if wobble:
        phi = np.arctan2(v / b, u / a)
        for order, amp, phase in wobble:
            scale = scale + amp * np.cos(order * phi + phase)
    d = d0 / scale
    grad = np.sqrt((u / (a * a)) ** 2 + (v / (b * b)) ** 2) / np.maximum(d0, 1e-3) / scale
    alpha = np.clip(0.5 - (d - 1.0) / np.maximum(grad, 1e-3), 0.0, 1.0)
    return u, v, d, alpha


def _disc(y, x, cx, cy, r):
    dx, dy = x - cx, y - cy
    rho = np.sqrt(dx * dx + dy * dy) / r
    alpha = np.clip(0.5 - (rho - 1.0) * r, 0.0, 1.0)
    return dx / r, dy / r, rho, alpha


def _fur(u, v, period, amp, phase, noise):
    """The fine texture shared by every body: wavy streaks along the body's axis plus grain."""
    t = np.sin((2 * math.pi / period) * (u + 0.8 * period * np.sin(v * (2 * math.pi / (3.1 * period)))) + phase)
    return amp * t + noise


def _marker_mask(pattern: str, x, y, rot: float) -> np.ndarray:
    """The class marker in head coordinates (x, y in units of the head radius)."""
    c, s = math.cos(rot), math.sin(rot)
    xr, yr = x * c + y * s, -x * s + y * c
    rho = np.sqrt(xr * xr + yr * yr)
    if pattern == "ring":
        return (rho >= 0.40) & (rho <= 0.78)
    if pattern == "cross":
        return ((np.abs(xr) < 0.21) | (np.abs(yr) < 0.21)) & (rho < 0.80)
    if pattern == "stripes":
        return (np.mod(xr / 0.62 + 0.25, 1.0) < 0.5) & (rho < 0.80)
    if pattern == "dots":
        mask = rho < 0.22
        for px, py in ((0.47, 0.47), (-0.47, 0.47), (0.47, -0.47), (-0.47, -0.47)):
            mask |= (xr - px) ** 2 + (yr - py) ** 2 < 0.22 ** 2
        return mask
    if pattern == "checker":
        return ((np.floor(xr / 0.5) + np.floor(yr / 0.5)) % 2 == 0) & (rho < 0.80)
    if pattern == "diamond":
        return np.abs(xr) + np.abs(yr) < 0.62
    raise ValueError(f"unknown marker pattern {pattern!r}")


def _composite(img, win, colour, alpha) -> None:
    a = alpha[..., None]
    img[win] = img[win] * (1.0 - a) + colour * a


def _background(rng, height, width) -> np.ndarray:
    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    img = np.empty((height, width, 3), np.float32)
    img[:] = _muted(rng)
    # smooth low-frequency colour noise, mostly brightness, a little hue: plane waves
    # cos(ax + by + p) = cos(ax + p) cos(by) - sin(ax + p) sin(by), built from outer products
    waves, vecs = [], []
    for _ in range(4):
        fx, fy = rng.uniform(-2.0, 2.0, size=2)
        ax = 2 * math.pi * fx * x / width + rng.uniform(0, 2 * math.pi)
        by = 2 * math.pi * fy * y / height
        waves.append(np.cos(ax) * np.cos(by) - np.sin(ax) * np.sin(by))
        vecs.append(rng.normal(0.0, 0.05) + rng.normal(0.0, 0.025, size=3))
    img += np.tensordot(np.stack(waves, axis=-1), np.array(vecs, np.float32), axes=1)
    # stripes over the whole image or over a half-plane
    if rng.random() < 0.6:
        ang = rng.uniform(0, math.pi)
        period = rng.uniform(5.0, 14.0)
        proj = x * math.cos(ang) + y * math.sin(ang)
        stripe = (np.mod(proj / period + rng.random(), 1.0) < rng.uniform(0.3, 0.6)).astype(np.float32)
        if rng.random() < 0.5:
            region = np.ones_like(stripe)
            amp = rng.uniform(0.03, 0.08)
        else:
            ang2 = rng.uniform(0, 2 * math.pi)
            off = rng.uniform(-0.3, 0.3) * min(height, width)
            proj2 = (x - width / 2) * math.cos(ang2) + (y - height / 2) * math.sin(ang2) - off
            region = np.clip(proj2 + 0.5, 0.0, 1.0)
            amp = rng.uniform(0.08, 0.18)
        sign = 1.0 if rng.random() < 0.5 else -1.0
        img += (stripe * region)[..., None] * (sign * amp * _muted(rng) / 0.6)
    # textured patches (rotated rectangles)
    short = min(height, width)
    for _ in range(int(rng.integers(0, 4))):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        hw, hh = rng.uniform(0.08, 0.3, size=2) * short
        theta = rng.uniform(0, math.pi)
        win = _window(cx, cy, math.hypot(hw, hh), height, width)
        if win is None:
            continue
        gy, gx = _grids(win)
        c, s = math.cos(theta), math.sin(theta)
        u = (gx - cx) * c + (gy - cy) * s
        v = -(gx - cx) * s + (gy - cy) * c
        alpha = np.clip(0.5 + np.minimum(hw - np.abs(u), hh - np.abs(v)), 0.0, 1.0)
        colour = np.broadcast_to(_muted(rng), alpha.shape + (3,)).copy()
        kind = rng.integers(0, 3)
        if kind == 0:  # checker
            cell = rng.uniform(3.0, 8.0)
            chk = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
            colour *= (0.85 + 0.3 * chk)[..., None]
        elif kind == 1:  # grain
            colour *= (1.0 + rng.normal(0.0, 0.08, size=alpha.shape).astype(np.float32))[..., None]
        _composite(img, win, colour, alpha)
    return img


def _body_geometry(rng, short: float) -> dict:
    a = short * math.exp(rng.uniform(math.log(BODY_SCALE[0]), math.log(BODY_SCALE[1])))
    b = a * rng.uniform(*BODY_ASPECT)
    wobble = tuple((k, rng.uniform(0.0, 0.07), rng.uniform(0, 2 * math.pi)) for k in (2, 3, 5))
    return {"a": a, "b": b, "theta": rng.uniform(0, 2 * math.pi), "wobble": wobble}


def _body_layer(y, x, geo, cx, cy):
    """Body frame (u, v), normalised radius and coverage of a body (object or distractor)."""
    return _ellipse(y, x, cx, cy, geo["a"], geo["b"], geo["theta"], geo["wobble"])


def _fur_params(rng) -> dict:
    return {"period": rng.uniform(2.6, 4.0), "amp": rng.uniform(0.05, 0.10), "phase": rng.uniform(0, 2 * math.pi)}


def _paint_body(rng, img, win, u, v, d, alpha, base, fur):
    noise = rng.normal(0.0, 0.025, size=alpha.shape).astype(np.float32)
    tex = _fur(u, v, fur["period"], fur["amp"], fur["phase"], noise)
    shade = 1.0 - 0.28 * np.clip(d, 0.0, 1.0) ** 2
    colour = base * (shade * (1.0 + tex))[..., None]
    _composite(img, win, colour, alpha)


@dataclass
class _Candidate:
    """A proposed object: geometry, instance look, and its fields over the body and head windows."""

    geo: dict
    r: float
    centre: tuple[float, float]
    head: tuple[float, float]
    base: np.ndarray
    fur: dict
    pattern_rot: float
    jitter: np.ndarray
    bwin: tuple
    hwin: tuple
    body: tuple       # (u, v, d, alpha) over bwin
    disc: tuple       # (x, y, rho, alpha) over hwin, in head-radius units
    head_full: np.ndarray
    obj_full: np.ndarray


def _propose_object(rng, height: int, width: int) -> _Candidate | None:
    """Draw one object: a body, a head at its rim (the head centre lands inside the image)."""
    geo = _body_geometry(rng, float(min(height, width)))
    a, b, theta = geo["a"], geo["b"], geo["theta"]
    frac = rng.uniform(*PART_FRACTION)
    r = max(math.sqrt(frac * a * b / (1.0 - frac)), MIN_HEAD_RADIUS)
    # head at the rim around the +u end of the body, its centre 0.4 r outside along the normal
    ang = rng.uniform(-0.45, 0.45)
    nu, nv = math.cos(ang) / a, math.sin(ang) / b
    norm = math.hypot(nu, nv)
    hu = a * math.cos(ang) + 0.4 * r * nu / norm
    hv = b * math.sin(ang) + 0.4 * r * nv / norm
    c, s = math.cos(theta), math.sin(theta)
    hx = rng.uniform(0.25 * r, width - 0.25 * r)
    hy = rng.uniform(0.25 * r, height - 0.25 * r)
    cx, cy = hx - (hu * c - hv * s), hy - (hu * s + hv * c)
    base, fur = _vivid(rng), _fur_params(rng)
    pattern_rot = rng.uniform(0, 2 * math.pi)
    jitter = rng.uniform(-0.06, 0.06, size=3).astype(np.float32)

    bwin = _window(cx, cy, a * 1.25, height, width)
    hwin = _window(hx, hy, r, height, width)
    if bwin is None or hwin is None:
        return None
    by, bx = _grids(bwin)
    body = _body_layer(by, bx, geo, cx, cy)
    hy_, hx_ = _grids(hwin)
    disc = _disc(hy_, hx_, hx, hy, r)
    body_full = np.zeros((height, width), bool)
    body_full[bwin] = body[2] < 1.0
    head_full = np.zeros((height, width), bool)
    head_full[hwin] = disc[2] < 1.0
    # half of the head and half of the body inside the image
    if head_full.sum() < 0.5 * math.pi * r * r or body_full.sum() < 0.5 * math.pi * a * b:
        return None
    return _Candidate(geo, r, (cx, cy), (hx, hy), base, fur, pattern_rot, jitter, bwin, hwin, body, disc,
                      head_full, body_full | head_full)


def _fits(cand: _Candidate, inst, objects, heads, full_area) -> bool:
    """Whether every earlier object keeps half its head and 30 % of its pixels visible under ``cand``."""
    for j, info in enumerate(objects):
        still = (inst == info.instance) & ~cand.obj_full
        if (still & heads[j]).sum() < 0.5 * math.pi * info.head_radius ** 2 or still.sum() < 0.3 * full_area[j]:
            return False
    return True


def _paint_object(rng, img, cand: _Candidate, cls: int) -> np.ndarray:
    """Paint body, then head (instance colour and fur, in the body's frame) with the class marker.
    Returns the marker mask over the head window."""
    _paint_body(rng, img, cand.bwin, *cand.body, cand.base, cand.fur)
    colour_name, pattern = CLASS_TABLE[cls - 1]
    (cx, cy), theta = cand.centre, cand.geo["theta"]
    c, s = math.cos(theta), math.sin(theta)
    y, x = _grids(cand.hwin)
    u = (x - cx) * c + (y - cy) * s
    v = -(x - cx) * s + (y - cy) * c
    px, py, prho, halpha = cand.disc
    noise = rng.normal(0.0, 0.025, size=halpha.shape).astype(np.float32)
    tex = _fur(u, v, cand.fur["period"], cand.fur["amp"], cand.fur["phase"], noise)
    shade = 1.0 - 0.22 * np.clip(prho, 0.0, 1.0) ** 2
    head_colour = cand.base * (shade * (1.0 + tex))[..., None]
    marker = _marker_mask(pattern, px, py, cand.pattern_rot)
    mcol = np.clip(np.array(MARKER_COLOURS[colour_name], np.float32) + cand.jitter, 0.0, 1.0)
    head_colour = np.where(marker[..., None], mcol * (0.92 + 0.08 * shade)[..., None], head_colour)
    _composite(img, cand.hwin, head_colour, halpha)
    return marker


def _paint_distractors(rng, img, max_count: int) -> None:
    """Paint up to ``max_count`` distractors: headless, marker-free body-like blobs (background)."""
    height, width = img.shape[:2]
    short = float(min(height, width))
    for _ in range(int(rng.integers(0, max_count + 1))):
        geo = _body_geometry(rng, short)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        win = _window(cx, cy, geo["a"] * 1.25, height, width)
        base, fur = _vivid(rng), _fur_params(rng)
        if win is None:
            continue
        y, x = _grids(win)
        u, v, d, alpha = _body_layer(y, x, geo, cx, cy)
        _paint_body(rng, img, win, u, v, d, alpha, base, fur)


def _paint_spots(rng, img) -> None:
    """Paint up to five small spots in hues that no marker uses."""
    height, width = img.shape[:2]
    for _ in range(int(rng.integers(0, 6))):
        r = rng.uniform(1.5, 4.0)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        colour = _hsv(SPOT_HUES[int(rng.integers(0, len(SPOT_HUES)))] / 360.0, rng.uniform(0.55, 0.85),
                      rng.uniform(0.6, 0.9))
        win = _window(cx, cy, r, height, width)
        if win is None:
            continue
        y, x = _grids(win)
        _, _, _, alpha = _disc(y, x, cx, cy, r)
        _composite(img, win, colour, alpha)


def _choose_classes(rng, max_objects: int, num_classes: int) -> list[int]:
    """The classes of the image's objects, in painting order (a later one may repeat an earlier class)."""
    weights = OBJECT_DECAY ** np.arange(max_objects, dtype=np.float64)
    n_objects = int(rng.choice(max_objects, p=weights / weights.sum())) + 1
    chosen: list[int] = []
    for _ in range(n_objects):
        if chosen and rng.random() < REUSE_CLASS:
            chosen.append(chosen[int(rng.integers(0, len(chosen)))])
        else:
            chosen.append(int(rng.integers(1, num_classes + 1)))
    return chosen


def _find_place(rng, inst, objects, heads, full_area) -> _Candidate | None:
    """The first of at most ``PLACEMENT_TRIES`` candidates that keeps the placed objects visible enough."""
    height, width = inst.shape
    for _ in range(PLACEMENT_TRIES):
        cand = _propose_object(rng, height, width)
        if cand is not None and _fits(cand, inst, objects, heads, full_area):
            return cand
    return None


def _place_objects(rng, img, chosen: list[int], names: list[str]):
    """Place and paint an object of each chosen class in turn (one that finds no place is dropped).

    Returns the instance map (0 = background, k = k-th placed object), the object records and their
    full-image head-disc masks.
    """
    height, width = img.shape[:2]
    inst = np.zeros((height, width), np.uint8)
    objects: list[ObjectInfo] = []
    heads: list[np.ndarray] = []      # full-image head-disc masks of placed objects
    full_area: list[int] = []         # in-image pixels of each placed object when it was placed
    for cls in chosen:
        cand = _find_place(rng, inst, objects, heads, full_area)
        if cand is None:
            continue  # no placement keeps everything visible enough: drop the object
        instance = len(objects) + 1
        marker = _paint_object(rng, img, cand, cls)
        inst[cand.obj_full] = instance
        marker_full = np.zeros((height, width), bool)
        marker_full[cand.hwin] = marker
        objects.append(ObjectInfo(instance, cls, names[cls - 1], (cand.geo["a"], cand.geo["b"]), cand.r,
                                  marker_mask=marker_full))
        heads.append(cand.head_full)
        full_area.append(int(cand.obj_full.sum()))
    return inst, objects, heads


def _label_map(inst: np.ndarray, objects: list[ObjectInfo], border: int) -> np.ndarray:
    """Class of each pixel from the instance map, with a ``border``-pixel 255 band along object boundaries."""
    lut = np.zeros(256, np.uint8)
    for info in objects:
        lut[info.instance] = info.class_index
    label = lut[inst]
    if border > 0:
        size = border + 1
        band = ndimage.maximum_filter(inst, size=size, mode="nearest") != ndimage.minimum_filter(
            inst, size=size, mode="nearest")
        label[band] = IGNORE_INDEX
    return label


def _measure_objects(inst: np.ndarray, objects: list[ObjectInfo], heads: list[np.ndarray]) -> None:
    """Fill each object's visible part, body and marker masks and pixel counts."""
    for j, info in enumerate(objects):
        visible = inst == info.instance
        info.part_mask = visible & heads[j]
        info.body_mask = visible & ~heads[j]
        info.marker_mask = info.marker_mask & visible
        info.object_pixels = int(visible.sum())
        info.part_pixels = int(info.part_mask.sum())
        info.marker_pixels = int(info.marker_mask.sum())


def _image_size(rng, s: dict) -> tuple[int, int]:
    """Height and width of the next image under the ``sizes`` model (module docstring)."""
    if s["sizes"] == "voc":
        short = int(rng.integers(s["min_side"], s["max_side"] + 1))
        return (s["max_side"], short) if rng.random() < PORTRAIT else (short, s["max_side"])
    return int(rng.integers(s["min_side"], s["max_side"] + 1)), int(rng.integers(s["min_side"], s["max_side"] + 1))


def render_sample(settings: dict, split: str, index: int) -> SyntheticSample:
    """Render image ``index`` of ``split`` ("train_aug" or "val") with its mask and object records."""
    s = check_settings(settings)
    rng = np.random.default_rng([s["seed"], SPLIT_CODES[split], index])
    height, width = _image_size(rng, s)
    img = _background(rng, height, width)
    _paint_distractors(rng, img, s["distractors"])
    _paint_spots(rng, img)
    chosen = _choose_classes(rng, s["max_objects"], s["num_classes"])
    inst, objects, heads = _place_objects(rng, img, chosen, class_names(s["num_classes"]))

    img += rng.normal(0.0, 0.012, size=img.shape).astype(np.float32)
    image = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    label = _label_map(inst, objects, s["border"])
    _measure_objects(inst, objects, heads)
    present = sorted(int(c) for c in np.unique(label) if 0 < c < IGNORE_INDEX)
    return SyntheticSample(image=image, label=label, objects=objects, classes=present)


# ----------------------------------------------------------------------------------------------
# Writing the dataset
# ----------------------------------------------------------------------------------------------

def _write_one(task) -> tuple[str, list[int], list[tuple[int, int, int]]]:
    """Render one image and write its JPEG and mask (top-level so that spawned workers can run it)."""
    out_dir, settings, split, index = task
    sample = render_sample(settings, split, index)
    name = image_id(split, index)
    out = Path(out_dir)
    Image.fromarray(sample.image, mode="RGB").save(
        out / "JPEGImages" / f"{name}.jpg", format="JPEG", quality=int(settings["jpeg_quality"]),
        optimize=False, progressive=False, subsampling=0)
    save_label_png(out / "SegmentationClass" / f"{name}.png", sample.label)
    stats = [(o.class_index, o.object_pixels, o.part_pixels) for o in sample.objects]
    return name, sample.classes, stats


def generate_synthetic(out_dir: Path, settings: dict, workers: int = 1) -> DatasetManifest:
    """Write the synthetic dataset into the existing, empty folder ``out_dir``; return its manifest.

    Layout (VOC 2012): ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (palette PNG, 255 on
    object borders), ``ImageSets/Segmentation/{train_aug,train,val}.txt``, ``cls_labels.json``,
    ``classes.txt`` and ``dataset.json``. Same ``settings`` -> byte-identical files for any ``workers``.
    """
    s = check_settings(settings)
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: output folder does not exist")
    if any(out_dir.iterdir()):
        raise ConfigError(f"{out_dir}: output folder is not empty")
    images, masks, lists = out_dir / "JPEGImages", out_dir / "SegmentationClass", out_dir / "ImageSets" / "Segmentation"
    for folder in (images, masks, lists):
        folder.mkdir(parents=True)

    tasks = [(str(out_dir), s, split, i) for split in ("train_aug", "val") for i in range(s[split])]
    labels: dict[str, list[int]] = {}
    ids: dict[str, list[str]] = {"train_aug": [], "val": []}
    bar = tqdm(total=len(tasks), desc="synthetic images", unit="img", file=sys.stderr, mininterval=0.5)
    try:
        if workers > 1:
            ctx = multiprocessing.get_context("spawn")
            chunk = max(1, min(16, len(tasks) // (workers * 4)))
            with ctx.Pool(processes=workers) as pool:
                for task, (name, classes, _) in zip(tasks, pool.imap(_write_one, tasks, chunksize=chunk)):
                    ids[task[2]].append(name)
                    labels[name] = classes
                    bar.update(1)
        else:
            for task in tasks:
                name, classes, _ = _write_one(task)
                ids[task[2]].append(name)
                labels[name] = classes
                bar.update(1)
    finally:
        bar.close()

    names = ["background", *class_names(s["num_classes"])]
    write_text(lists / "train_aug.txt", "".join(f"{i}\n" for i in ids["train_aug"]))
    write_text(lists / "train.txt", "".join(f"{i}\n" for i in ids["train_aug"][: s["train"]]))
    write_text(lists / "val.txt", "".join(f"{i}\n" for i in ids["val"]))
    write_json(out_dir / "cls_labels.json", labels)
    write_text(out_dir / "classes.txt", "".join(f"{n}\n" for n in names))
    manifest = DatasetManifest(
        root=out_dir, name="synthetic", classes=tuple(names),
        splits={role: Split(lists / f"{role}.txt", images, masks) for role in ("train_aug", "train", "val")},
        labels_file=out_dir / "cls_labels.json")
    manifest.write()
    return manifest


def object_statistics(settings: dict, split: str = "train_aug", count: int | None = None):
    """Per-object records of the first ``count`` images of ``split`` (rendered, nothing written).

    Returns a :class:`pandas.DataFrame` with one row per object: image id, class, visible object and
    part (head) pixels, part fraction, marker pixels, image pixels. Useful to check the design
    (part ≈ 8-15 % of the object) without reading files.
    """
    import pandas as pd

    s = check_settings(settings)
    count = s[split] if count is None else min(count, s[split])
    rows = []
    for i in range(count):
        sample = render_sample(s, split, i)
        for o in sample.objects:
            rows.append({"image": image_id(split, i), "class_index": o.class_index, "class_name": o.class_name,
                         "object_pixels": o.object_pixels, "part_pixels": o.part_pixels,
                         "part_fraction": o.part_fraction, "marker_pixels": o.marker_pixels,
                         "image_pixels": sample.label.size})
    return pd.DataFrame(rows)
