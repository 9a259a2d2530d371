"""Dataset stages: ``prepare-data`` (synthetic / VOC + SBD / COCO) and ``dataset-report``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from sipe.data.manifest import DatasetManifest, write_content_digest
from sipe.data.validate import validate_dataset
from sipe.io import atomic_path, read_label_png, write_json

log = logging.getLogger(__name__)


def _synthetic(settings: dict, out: Path, workers: int) -> DatasetManifest:
    from sipe.data.synthetic import generate_synthetic

    return generate_synthetic(out, settings, workers=workers)


def _voc(settings: dict, out: Path, workers: int) -> DatasetManifest:
    from sipe.data.voc import prepare_voc

    return prepare_voc(Path(settings["root"]), Path(settings["sbd_root"]), out, workers=workers)


def _coco(settings: dict, out: Path, workers: int) -> DatasetManifest:
    from sipe.data.coco import prepare_coco

    return prepare_coco(Path(settings["root"]), out, settings["crowd"], workers=workers)


# params.yaml `dataset` → the builder that prepares it from its params.yaml section.
BUILDERS = {"synthetic": _synthetic, "voc": _voc, "coco": _coco}


def prepare_data(params: dict, out: Path, workers: int) -> DatasetManifest:
    """Build the prepared dataset ``params['dataset']`` names into ``out`` (replaced atomically), validated and
    with its content digest (``content.json``)."""
    name = params["dataset"]
    with atomic_path(out, directory=True) as tmp:
        manifest = BUILDERS[name](params[name], tmp, workers)
        validate_dataset(manifest, workers=workers)
        write_content_digest(tmp)
    log.info("prepared %s dataset in %s", name, out)
    return DatasetManifest.load(out)


def dataset_report(params: dict, data: Path, out: Path, workers: int) -> dict:
    """Validate a prepared dataset and write ``stats.json``, ``class_stats.csv`` (and its page for the report,
    ``class_stats.html``) and ``contact_sheet.png``."""
    from PIL import Image

    from sipe.data.stats import dataset_statistics
    from sipe.viz import contact_sheet, percent_columns, save_png, write_html_table

    manifest = DatasetManifest.load(data)
    validate_dataset(manifest, workers=workers)
    summary, per_class = dataset_statistics(manifest, "train_aug")
    summary["splits"] = {role: len(manifest.ids(role)) for role in manifest.splits}

    labels = manifest.class_labels()
    ids = manifest.ids("train")[: params["dataset_report"]["samples"]]
    images, masks, captions = [], [], []
    for image_id in ids:
        with Image.open(manifest.image_path("train", image_id)) as image:
            images.append(np.asarray(image.convert("RGB")))
        masks.append(read_label_png(manifest.mask_path("train", image_id)))
        captions.append(", ".join(manifest.classes[c] for c in labels[image_id]))
    sheet = contact_sheet(images, masks, captions, columns=2, class_names=manifest.classes)  # fits a screen

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "stats.json", summary)
    with atomic_path(out / "class_stats.csv") as tmp:
        per_class.to_csv(tmp)  # the index holds the class names
    write_html_table(out / "class_stats.html",
                     percent_columns(per_class.reset_index(), {"mean_area_fraction": "mean object area (% of image)",
                                                               "pixel_fraction": "pixels (% of all)"}),
                     f"Classes of train_aug ({manifest.name})",
                     "images: train_aug images with the class; objects: connected components of its GT mask.")
    save_png(out / "contact_sheet.png", sheet)
    return summary
