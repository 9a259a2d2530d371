"""``sipe predict`` and ``sipe localise``: a trained model on images the user names (not a dataset split).

Inputs (:func:`image_paths`): folders (their ``.jpg``, ``.jpeg`` and ``.png`` files), globs, list files
(``.txt``/``.lst``, one path a line, relative to the list file) and image files. Output names are the
images' stems, so two inputs with the same stem are refused.

``predict`` writes ``OUT/<stem>.png`` (palette label map, CRF'd with ``crf``), with ``overlay``
``OUT/overlays/<stem>.png`` and with ``shares`` ``OUT/shares.csv`` (per image the pixel share of every
class). ``localise`` writes ``OUT/<stem>.npz`` (the map file of :mod:`sipe.maps`) and ``OUT/<stem>.png``
(CAM and IS-CAM heat maps). Every file is written atomically; an image that cannot be read stops the run
(``on_error="stop"``) or is skipped with one line on the log (``"skip"``).
"""

from __future__ import annotations

import csv
import glob
import io
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from sipe.device import torch_threads
from sipe.errors import SipeError, first_offenders, one_line
from sipe.figures import save_localisation_figure, save_segmentation_figure
from sipe.io import read_text_file, save_label_png, write_text
from sipe.maps import check_scales, map_path, save_maps
from sipe.predict import MAX_PIXELS, ImageError, Localiser, Segmenter, class_ids, load, open_image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LIST_SUFFIXES = (".txt", ".lst")
ON_ERROR = ("stop", "skip")
OVERLAY_DIR, SHARES_FILE = "overlays", "shares.csv"


def _expand(item: str) -> list[Path]:
    path = Path(item)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        lines = [line.strip() for line in read_text_file(path, "image list").splitlines()]
        return [path.parent / line for line in lines if line and not line.startswith("#")]
    if path.exists() or not glob.has_magic(item):
        return [path]
    return sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).suffix.lower() in IMAGE_SUFFIXES)


def image_paths(items: Sequence[str]) -> list[Path]:
    """The images that ``items`` name (module docstring); one-line error when none, or when stems repeat."""
    paths, empty = [], []
    for item in items:
        found = _expand(str(item))
        paths += found
        if not found:
            empty.append(str(item))
    if empty:
        raise SipeError(f"no images in {first_offenders(empty)} (folders, globs and list files name "
                        f"{', '.join(IMAGE_SUFFIXES)} files)")
    seen: dict[str, Path] = {}
    for path in paths:
        if path.stem in seen and seen[path.stem] != path:
            raise SipeError(f"{path}: same name as {seen[path.stem]}; outputs are named by the image name")
        seen[path.stem] = path
    return list(dict.fromkeys(paths))


def _process(path: Path, work: Callable[[Path, np.ndarray], None], max_pixels: int) -> None:
    image = open_image(path, max_pixels)
    try:
        work(path, image)
    except (RuntimeError, ValueError) as exc:  # e.g. out of GPU memory: one line naming the image
        raise ImageError(f"{path}: cannot process image ({type(exc).__name__}: {one_line(exc, 160)})") from None


def for_each_image(paths: Sequence[Path], work: Callable[[Path, np.ndarray], None], on_error: str = "stop",
                   max_pixels: int = MAX_PIXELS, desc: str = "") -> list[Path]:
    """``work(path, image)`` for every readable image (tqdm progress); returns the skipped paths. An unreadable,
    empty, too large or too small image, or one ``work`` fails on, raises (``on_error="stop"``) or is logged in
    one line and skipped (``"skip"``)."""
    from tqdm import tqdm

    if on_error not in ON_ERROR:
        raise SipeError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
    skipped = []
    for path in tqdm(paths, desc=desc, unit="img", mininterval=2.0):
        try:
            _process(path, work, max_pixels)
        except ImageError as exc:
            if on_error == "stop":
                raise
            log.warning("skipped %s", exc)
            skipped.append(path)
    if skipped and len(skipped) == len(paths):
        raise SipeError(f"none of the {len(paths)} images could be used (first: {skipped[0]})")
    return skipped


def shares_csv(rows: dict[str, np.ndarray], class_names: Sequence[str]) -> str:
    """CSV text: per image (row) the share of its pixels in each class (columns), 6 decimals."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", *class_names])
    for name, labels in rows.items():
        counts = np.bincount(labels.ravel(), minlength=len(class_names))[:len(class_names)]
        writer.writerow([name, *(f"{c / labels.size:.6f}" for c in counts)])
    return buffer.getvalue()


def _loaded(model_path: Path, kind: type, data: Path | None, device: str | None):
    model = load(model_path, device=device, data=data)
    if not isinstance(model, kind):
        want = "DeepLab (train-deeplab's model.pt)" if kind is Segmenter else "SIPE (train-sipe's model.pt)"
        raise SipeError(f"{model_path}: not a {want} checkpoint")
    return model


def predict_images(params: dict, model_path: Path, sources: Sequence[str], out_dir: Path, *, data: Path | None = None,
                   flip: bool | None = None, crf: bool | None = None, msc: bool = True, overlay: bool = False,
                   shares: bool = False, on_error: str = "stop", max_pixels: int = MAX_PIXELS,
                   device: str | None = None, workers: int = 1) -> int:
    """``sipe predict`` (module docstring); ``flip`` and ``crf`` default to ``params["deeplab"]``, the ``segment``
    stage's settings. Returns the number of images labelled."""
    flip = params["deeplab"]["flip"] if flip is None else flip
    crf = params["deeplab"]["crf"] if crf is None else crf
    paths = image_paths(sources)
    out_dir = Path(out_dir)
    labelled: dict[str, np.ndarray] = {}
    with torch_threads(workers):
        model = _loaded(model_path, Segmenter, data, device)

        def work(path: Path, image: np.ndarray) -> None:
            labels = model.predict(image, flip=flip, crf=crf, msc=msc)
            save_label_png(out_dir / f"{path.stem}.png", labels)
            if overlay:
                save_segmentation_figure(out_dir / OVERLAY_DIR / f"{path.stem}.png", image, labels, model.classes,
                                         path.name)
            labelled[path.name] = labels if shares else labels[:0]

        start = time.perf_counter()
        skipped = for_each_image(paths, work, on_error, max_pixels, "predict")
    if shares:
        write_text(out_dir / SHARES_FILE, shares_csv(labelled, model.classes))
    log.info("predict: %d images in %.1f s (%s%s, %s), %d skipped, into %s", len(labelled),
             time.perf_counter() - start, "MSC, " if msc else "", "flip" if flip else "no flip",
             "CRF" if crf else "no CRF", len(skipped), out_dir)
    return len(labelled)


def localise_images(params: dict, model_path: Path, sources: Sequence[str], out_dir: Path, *,
                    data: Path | None = None, classes: Sequence[str] | None = None, top_k: int = 1,
                    scales: Sequence[float] | None = None, on_error: str = "stop", max_pixels: int = MAX_PIXELS,
                    device: str | None = None, workers: int = 1) -> int:
    """``sipe localise`` (module docstring): the maps of ``classes`` (else of the ``top_k`` best-scored classes) at
    ``scales`` (default ``params["cams"]["scales"]``, the ``make-cams`` stage's). Returns the number of images."""
    scales = check_scales(scales or params["cams"]["scales"])
    paths = image_paths(sources)
    out_dir = Path(out_dir)
    done = []
    with torch_threads(workers):
        model = _loaded(model_path, Localiser, data, device)
        if classes:
            classes = class_ids(classes, model.classes)  # unknown names fail before any image

        def work(path: Path, image: np.ndarray) -> None:
            keys, cam, is_cam = model.localise(image, classes, top_k=top_k, scales=scales)
            save_maps(map_path(out_dir, path.stem), keys, cam, is_cam)
            save_localisation_figure(out_dir / f"{path.stem}.png", image, keys, cam, is_cam, model.classes, path.name)
            done.append(path)

        start = time.perf_counter()
        skipped = for_each_image(paths, work, on_error, max_pixels, "localise")
    log.info("localise: %d images in %.1f s (scales %s), %d skipped, into %s", len(done),
             time.perf_counter() - start, ", ".join(f"{s:g}" for s in scales), len(skipped), out_dir)
    return len(done)
