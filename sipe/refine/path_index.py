"""IRN's path index (docs/method.md F.3): pixel pairs within a radius, the path between them, and path affinities.

A pair is a source pixel and a destination at an offset (dy, dx) from a half-disk of directions;
the affinity of the pair is 1 − the largest boundary probability on the straight path between
them (Ahn et al., CVPR 2019, eq. 2). The same index serves IRN training (radius 10 on the crop's
stride-4 grid, docs/method.md F.4) and the random walk (radius 5 on the padded stride-4 map, docs/method.md F.5).

Direction order: the directions are grouped by path length (ascending; within a group, in the
order of :func:`search_directions`), so that each group's path points stack into one index array.
Every tensor indexed by direction (affinities, pair labels, displacement targets) uses this order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from sipe.io import IGNORE_INDEX


def search_directions(radius: int) -> list[tuple[int, int]]:
    """The half-disk of offsets (dy, dx) (docs/method.md F.3): dy = 0 with dx = 1..r−1, then dy = 1..r−1 with
    |dx| ≤ r−1, keeping dx² + dy² < r². Radius 5 gives 34 directions, radius 10 gives 152."""
    if radius < 2:
        raise ValueError(f"radius must be at least 2, got {radius}")
    directions = [(0, dx) for dx in range(1, radius)]
    directions += [(dy, dx) for dy in range(1, radius) for dx in range(-radius + 1, radius)
                   if dx * dx + dy * dy < radius * radius]
    return directions


def direction_path(dy: int, dx: int) -> list[tuple[int, int]]:
    """The path of direction (dy, dx) (docs/method.md F.3): every integer point (y, x) of the bounding box of
    (0, 0)–(dy, dx) whose distance to the line through them is below 1, both ends included, sorted
    farthest first (by |y| + |x|), so the first point is the destination."""
    length_sq = dy * dy + dx * dx
    if length_sq == 0:
        raise ValueError("direction (0, 0) has no path")
    points = [(y, x) for y in range(min(0, dy), max(0, dy) + 1) for x in range(min(0, dx), max(0, dx) + 1)
              if (dy * x - dx * y) ** 2 < length_sq]  # squared distance to the line · |d|² < |d|²
    return sorted(points, key=lambda p: -(abs(p[0]) + abs(p[1])))


@dataclass(frozen=True)
class PathGroup:
    """Directions [start, stop) of the ordered list, all with paths of ``length`` points."""

    start: int
    stop: int
    length: int
    points: torch.Tensor  # int64 [stop − start, length, n_src]: flat index of every path point of every pair


@dataclass
class PathIndex:
    """Pairs and paths of ``radius`` on a ``height`` × ``width`` grid (docs/method.md F.3).

    Sources are the pixels of rows [0, H − r_f) and columns [r_f, W − r_f), r_f = radius − 1, so
    that every destination lies inside the grid. Attributes (all flat indices into the grid):

    * ``directions`` int64 [D, 2]: (dy, dx) of each direction, grouped by path length;
    * ``src`` int64 [n_src]; ``dst`` int64 [D, n_src] = src + dy·W + dx;
    * ``groups``: one :class:`PathGroup` per path length.
    """

    radius: int
    height: int
    width: int
    directions: torch.Tensor = field(init=False)
    src: torch.Tensor = field(init=False)
    dst: torch.Tensor = field(init=False)
    groups: list[PathGroup] = field(init=False)

    def __post_init__(self):
        r_floor = math.ceil(self.radius) - 1
        rows, cols = self.height - r_floor, self.width - 2 * r_floor
        if rows < 1 or cols < 1:
            raise ValueError(f"a {self.height}x{self.width} grid is too small for radius {self.radius}: "
                             f"need at least {r_floor + 1} rows and {2 * r_floor + 1} columns")
        directions = search_directions(self.radius)
        paths = [direction_path(dy, dx) for dy, dx in directions]
        order = sorted(range(len(directions)), key=lambda i: len(paths[i]))  # stable: ties keep the order of docs/method.md F.3
        ys, xs = np.meshgrid(np.arange(rows), np.arange(r_floor, r_floor + cols), indexing="ij")
        src = (ys * self.width + xs).reshape(-1)

        def flat(offsets) -> np.ndarray:  # [len(offsets), n_src]
            return np.stack([src + dy * self.width + dx for dy, dx in offsets])

        self.directions = torch.as_tensor([directions[i] for i in order], dtype=torch.int64)
        self.src = torch.from_numpy(src.astype(np.int64))
        self.dst = torch.from_numpy(flat([directions[i] for i in order]).astype(np.int64))
        self.groups = []
        start = 0
        while start < len(order):
            length = len(paths[order[start]])
            stop = start
            while stop < len(order) and len(paths[order[stop]]) == length:
                stop += 1
            points = np.stack([flat(paths[order[i]]) for i in range(start, stop)])
            self.groups.append(PathGroup(start, stop, length, torch.from_numpy(points.astype(np.int64))))
            start = stop

    @property
    def num_directions(self) -> int:
        return int(self.directions.shape[0])

    @property
    def num_sources(self) -> int:
        return int(self.src.numel())


def path_affinity(boundary: torch.Tensor, index: PathIndex) -> torch.Tensor:
    """Affinities a(i, j) = 1 − max_{p ∈ path(i→j)} B(p) (docs/method.md F.3) of every pair: [N, D, n_src].

    ``boundary`` [N, H, W] holds boundary probabilities B (sigmoid of the edge logits) on the
    index's grid. Differentiable (the gradient of a max goes to the path's maximum).
    """
    n = boundary.shape[0]
    if tuple(boundary.shape[1:]) != (index.height, index.width):
        raise ValueError(f"boundary map {tuple(boundary.shape[1:])} does not fit a path index of "
                         f"{index.height}x{index.width}")
    flat = boundary.reshape(n, -1)
    parts = []
    for group in index.groups:
        points = group.points.to(flat.device)
        values = flat[:, points.reshape(-1)].view(n, *points.shape)  # [N, D_g, L, n_src]
        parts.append(1.0 - values.amax(dim=2))
    return torch.cat(parts, dim=1)


def affinity_labels(labels: torch.Tensor, index: PathIndex) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pair labels from label maps [N, H, W] (values 0..C, 255 = ignore), docs/method.md F.4: float [N, D, n_src] each.

    Only pairs whose two labels are both known count: ``bg_pos`` = both background, ``fg_pos`` =
    the same foreground class, ``neg`` = different classes.
    """
    n = labels.shape[0]
    flat = labels.reshape(n, -1)
    src = flat[:, index.src.to(flat.device)].unsqueeze(1)                          # [N, 1, n_src]
    dst = flat[:, index.dst.to(flat.device).reshape(-1)].view(n, *index.dst.shape)  # [N, D, n_src]
    known = (src != IGNORE_INDEX) & (dst != IGNORE_INDEX)
    same = known & (src == dst)
    bg_pos = same & (src == 0)
    fg_pos = same & (src != 0)
    neg = known & (src != dst)
    return bg_pos.float(), fg_pos.float(), neg.float()


def pair_displacement(displacement: torch.Tensor, index: PathIndex) -> torch.Tensor:
    """D(src) − D(dst) of every pair (docs/method.md F.4): [N, 2, D, n_src] from a displacement field [N, 2, H, W]."""
    n, c = displacement.shape[:2]
    flat = displacement.reshape(n, c, -1)
    src = flat[:, :, index.src.to(flat.device)].unsqueeze(2)
    dst = flat[:, :, index.dst.to(flat.device).reshape(-1)].view(n, c, *index.dst.shape)
    return src - dst
