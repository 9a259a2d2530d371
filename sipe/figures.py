"""Matplotlib figures of ``sipe predict`` and ``sipe localise``: a label map over its image with a class
legend, and CAM / IS-CAM heat maps with a colour bar (written atomically as PNG)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from sipe.io import atomic_path
from sipe.viz import (
    HEAT_ALPHA,
    cam_with_background_row,
    class_label,
    colorize_labels,
    legend_entries,
)

PANEL_INCHES = 3.2   # height of one picture in the figure
LABEL_ALPHA = 0.55   # weight of the label colours over the image
TITLE_SIZE = 11      # points (at 100 dpi about 15 pixels): titles of the pictures
TEXT_SIZE = 10       # points: legend, colour-bar label and ticks


def _figure(rows: int, columns: int, aspect: float, extra: float = 0.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(columns * PANEL_INCHES * aspect + extra, rows * PANEL_INCHES + 0.4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    return fig, axes


def _save(fig, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        fig.savefig(handle, format="png")


def save_segmentation_figure(path: str | os.PathLike, image: np.ndarray, labels: np.ndarray,
                             class_names: Sequence[str], title: str = "") -> None:
    """The image beside its label map blended over it, with a legend of the classes present (VOC colours)."""
    from matplotlib.patches import Patch

    height, width = labels.shape
    entries = legend_entries([labels], class_names)  # (name, colour) of each label value present, 255 = "ignore"
    legend_inches = 0.8 + 0.09 * max(len(name) for name, _ in entries)  # the colour patch and the longest name
    fig, axes = _figure(1, 2, width / height, extra=legend_inches)
    colours = colorize_labels(labels)
    axes[0, 0].imshow(image)
    axes[0, 0].set_title(title, fontsize=TITLE_SIZE)
    axes[0, 1].imshow(np.clip((1 - LABEL_ALPHA) * image + LABEL_ALPHA * colours, 0, 255).astype(np.uint8))
    axes[0, 1].set_title("prediction", fontsize=TITLE_SIZE)
    handles = [Patch(facecolor=np.array(colour) / 255.0, edgecolor="black", label=name) for name, colour in entries]
    fig.legend(handles=handles, loc="center right", fontsize=TEXT_SIZE, frameon=False)
    fig.subplots_adjust(left=0.01, right=1 - legend_inches / fig.get_figwidth(), top=0.9, bottom=0.02, wspace=0.03)
    _save(fig, path)


def save_localisation_figure(path: str | os.PathLike, image: np.ndarray, keys, cam: np.ndarray, is_cam: np.ndarray,
                             class_names: Sequence[str], title: str = "") -> None:
    """Two rows, one column per key: the CAM (background: 1 − max of the CAM rows, eq. 2) above the IS-CAM,
    jet heat maps over the image, each column titled with its class, one colour bar for all (opaque: the scale
    of the maps before they are blended over the image)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    keys = np.asarray(keys, dtype=np.int64)
    rows = {"CAM": cam_with_background_row(cam), "IS-CAM": np.asarray(is_cam, dtype=np.float32)}
    height, width = image.shape[:2]
    fig, axes = _figure(2, len(keys), width / height, extra=1.0)
    for r, (name, maps) in enumerate(rows.items()):
        for c, key in enumerate(keys):
            ax = axes[r, c]
            ax.imshow(image)
            ax.imshow(maps[c], cmap="jet", vmin=0.0, vmax=1.0, alpha=HEAT_ALPHA)
            ax.set_title(f"{name}: {class_label(class_names, key)}", fontsize=TITLE_SIZE)
    fig.suptitle(title, fontsize=TITLE_SIZE + 1)
    fig.subplots_adjust(left=0.01, right=1 - 1.0 / fig.get_figwidth(), top=0.88, bottom=0.02, wspace=0.03)
    bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap="jet"), ax=axes.ravel().tolist(), fraction=0.03,
                       pad=0.02)
    bar.set_label("activation (max-normalised)", fontsize=TEXT_SIZE)
    bar.ax.tick_params(labelsize=TEXT_SIZE)
    _save(fig, path)


__all__ = ["save_localisation_figure", "save_segmentation_figure"]
