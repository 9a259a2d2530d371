"""Dataset stages: ``prepare-data`` (synthetic / VOC + SBD / COCO) and ``dataset-report``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from sipe.data.manifest import DatasetManifest
from sipe.data.validate import validate_dataset
from sipe.io import atomic_path, read_label_png, write_json

log = logging.getLogger(__name__)


def prepare_data(params: dict, out: Path, workers: int) -> DatasetManifest:
    """Build the prepared dataset ``params['dataset']`` names into ``out`` (replaced atomically)."""
    name = params["dataset"]
    with atomic_path(out, directory=True) as tmp:
        if name == "synthetic":
            from sipe.data.synthetic import generate_synthetic

            manifest = generate_synthetic(tmp, params["synthetic"], workers=workers)
        elif name == "voc":
            from sipe.data.voc import prepare_voc

            manifest = prepare_voc(Path(params["voc"]["root"]), Path(params["voc"]["sbd_root"]), tmp, workers=workers)
        else:
            from sipe.data.coco import prepare_coco

            manifest = prepare_coco(Path(params["coco"]["root"]), tmp, params["coco"]["crowd"], workers=workers)
        validate_dataset(manifest, workers=workers)
    log.info("prepared %s dataset in %s", name, out)
    return DatasetManifest.load(out)


def dataset_report(params: dict, data: Path, out: Path, workers: int) -> dict:
    """Validate a prepared dataset and write ``stats.json``, ``class_stats.csv`` and ``contact_sheet.png``."""
    from PIL import Image

    from sipe.data.stats import dataset_statistics
    from sipe.viz import contact_sheet, save_png

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
    sheet = contact_sheet(images, masks, captions)

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "stats.json", summary)
    with atomic_path(out / "class_stats.csv") as tmp:
        per_class.to_csv(tmp)  # the index holds the class names
    save_png(out / "contact_sheet.png", sheet)
    return summary
