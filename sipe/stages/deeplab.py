"""DeepLab stages (docs/method.md G): ``train-deeplab`` on the pseudo labels, ``segment`` (MSC inference, optional
flip and denseCRF, sharded), ``eval-seg`` (IoU family against the GT) and ``seg-sheet`` (pictures).

``train-deeplab`` runs the trainer template (:mod:`sipe.trainer`, output layout there); its
``train/steps.csv`` logs loss (the sum over the MSC outputs) and the loss of each output
(loss_x1, loss_x0.5, loss_x0.75, loss_max).

``segment`` writes ``<out>/pred/<id>.png`` (MSC, argmax of the softmax) and, with ``deeplab.crf``,
``<out>/crf/<id>.png`` (the same probabilities through the docs/method.md G.4 denseCRF); palette PNGs. For the
VOC ``test`` split it writes only the final maps (CRF'd when ``deeplab.crf``), in the evaluation
server's layout ``<out>/results/VOC2012/Segmentation/comp6_test_cls/<id>.png``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from sipe.data.manifest import DatasetManifest
from sipe.data.segmentation import PseudoLabelDataset, SegAugment, label_files, normalize_for
from sipe.device import model_device, select_device, torch_threads
from sipe.errors import ConfigError, SipeError
from sipe.io import IGNORE_INDEX, read_image, read_label_png, read_mask, save_label_png
from sipe.metrics import ConfusionMatrix, per_class_table, write_scores
from sipe.models.deeplab import DeepLabV2, load_deeplab
from sipe.refine.crf import crf_inference_probabilities
from sipe.stages.shards import data_input, gather, run_record, shard_ids, sharded_output
from sipe.trainer import Built, TrainingJob, backbone_init, ids_sha1, run_training, trained_settings
from sipe.viz import contact_sheet, save_png, write_per_class_html

log = logging.getLogger(__name__)

PRED_DIR, CRF_DIR = "pred", "crf"
VOC_SERVER_DIR = "results/VOC2012/Segmentation/comp6_test_cls"  # the VOC evaluation server's layout
INFERENCE_SETTINGS = ("flip", "crf", "shards", "sheet_samples")  # deeplab settings training does not read


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------

def _nearest_sources(source: int, target: int, device) -> torch.Tensor:
    """PIL NEAREST's source index of each target pixel, computed as Pillow does: the position of pixel 0
    is s/2 with s = source/target, each next one adds s (double precision), then truncation. Exact
    ties such as 16 → 6 therefore fall where Pillow's do (torch's ``nearest-exact`` differs there)."""
    step = source / target
    position = np.cumsum(np.r_[step / 2, np.full(target - 1, step)])
    return torch.from_numpy(np.minimum(position.astype(np.int64), source - 1)).to(device)


def resize_labels(labels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Label maps [N,H,W] nearest-resized to ``size`` exactly as PIL NEAREST does (docs/method.md G.2)."""
    height, width = labels.shape[-2:]
    if (height, width) == tuple(size):
        return labels
    rows = _nearest_sources(height, int(size[0]), labels.device)
    cols = _nearest_sources(width, int(size[1]), labels.device)
    return labels[:, rows][:, :, cols]


def cross_entropy_ignore(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the pixels whose label is not 255 (``ignore_index=255``); 0 with a
    zero gradient when no pixel is labelled (where the mean would be 0/0)."""
    total = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (labels != IGNORE_INDEX).sum().clamp(min=1)


def msc_loss(outputs: Sequence[torch.Tensor], labels: torch.Tensor) -> list[torch.Tensor]:
    """docs/method.md G.2: one cross-entropy (ignore 255) per MSC output, the labels nearest-resized to its size;
    the training loss is their sum."""
    return [cross_entropy_ignore(logits, resize_labels(labels, logits.shape[-2:])) for logits in outputs]


def output_names(scales: Sequence[float]) -> list[str]:
    """Log names of the MSC outputs: ``loss_x1``, ``loss_x0.5``, …, ``loss_max``."""
    return [f"loss_x{s:g}" for s in (1.0, *scales)] + ["loss_max"]


def deeplab_step(scales: Sequence[float]) -> Callable[[torch.nn.Module, dict], dict]:
    """The training step for a network with MSC ``scales``: the sum of the losses of its outputs (minimised)
    and each of them, named by :func:`output_names`. The model may be wrapped (DDP)."""
    names = output_names(scales)

    def step(model: torch.nn.Module, batch: dict) -> dict:
        parts = msc_loss(model(batch["image"]), batch["label"])
        return {"loss": torch.stack(parts).sum(), **dict(zip(names, parts))}

    return step


def build_deeplab(params: dict, num_classes: int, init: Path | None = None) -> DeepLabV2:
    """DeepLabV2 from the ``deeplab`` params section. ``weights``: :func:`sipe.trainer.backbone_init`;
    ``pretrain`` needs ``deeplab.backbone`` = ``sipe.backbone``, the network the pretrain stage trains."""
    settings = params["deeplab"]
    weights = backbone_init("deeplab", settings["weights"], init)
    if settings["weights"] == "pretrain" and settings["backbone"] != params["sipe"]["backbone"]:
        raise ConfigError(f"deeplab.weights is 'pretrain' but deeplab.backbone {settings['backbone']} differs "
                          f"from sipe.backbone {params['sipe']['backbone']}, the network the pretrain stage trains")
    return DeepLabV2(num_classes, backbone=settings["backbone"], weights=weights, style=settings["style"])


def train_deeplab(params: dict, data: Path, labels_dir: Path, out_dir: Path, workers: int, device: str | None = None,
                  *, init: Path | None = None, on_step: Callable[[int, dict], None] | None = None) -> Path:
    """Train DeepLabV2 on the ``train_aug`` images with the label maps of ``labels_dir`` (docs/method.md G.2) for
    ``deeplab.iterations`` steps of ``batch_size`` × ``iter_size`` images; return the path of ``model.pt``
    (the rest as :func:`sipe.trainer.run_training`)."""
    settings = dict(params["deeplab"])
    manifest = DatasetManifest.load(data)
    augment = SegAugment(crop=settings["crop"], scales=tuple(settings["scales"]), style=settings["style"])
    dataset = PseudoLabelDataset(manifest, labels_dir, "train_aug", augment)
    batch = settings["batch_size"] * settings["iter_size"]
    if len(dataset) < batch:
        raise ConfigError(f"deeplab.batch_size x deeplab.iter_size = {batch} exceeds the {len(dataset)} "
                          f"train_aug images of {data}")

    def build() -> Built:
        model = build_deeplab(params, manifest.num_classes, init)
        return Built(model, model.parameter_groups(), deeplab_step(model.scales))

    labels_sha1 = hashlib.sha1(b"".join(hashlib.sha1(p.read_bytes()).digest() for p in dataset.labels)).hexdigest()
    job = TrainingJob(
        name="train-deeplab", title=f"DeepLabV2 training on pseudo labels ({manifest.name})", settings=settings,
        dataset=dataset, dataset_name=manifest.name, build=build,
        config={"max_step": settings["iterations"], "batch_size": batch, "accumulate": settings["iter_size"]},
        fingerprint={"deeplab": trained_settings(settings, *INFERENCE_SETTINGS), "num_classes": manifest.num_classes,
                     "labels_sha1": labels_sha1, "ids_sha1": ids_sha1(dataset.ids)},
        inputs={"init": init},
        about=f"DeepLabV2 {settings['backbone']}, weights {settings['weights']}, style {settings['style']}, "
              f"{settings['batch_size']} x {settings['iter_size']} per step, crop {settings['crop']}, "
              f"labels {labels_dir}",
        summary={"labels": str(labels_dir)})
    return run_training(job, Path(out_dir), workers, device, on_step)


# ----------------------------------------------------------------------------------------------
# Inference
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def predict_probabilities(model: DeepLabV2, image: np.ndarray, flip: bool = False) -> np.ndarray:
    """Class probabilities float32 [K,H,W] of a uint8 RGB image (docs/method.md G.3): the MSC max-fused logits,
    bilinearly upsampled to the image size (``align_corners=False``), softmax. With ``flip`` the logits
    of the mirrored image (mirrored back) are averaged in (not in the reference)."""
    device = model_device(model)
    x = normalize_for(image, model.config["style"])[None].to(device)
    if flip:
        x = torch.cat([x, x.flip(-1)])
    logits = model(x)[-1]
    if flip:
        logits = (logits[:1] + logits[1:].flip(-1)) / 2
    logits = F.interpolate(logits, size=image.shape[:2], mode="bilinear", align_corners=False)
    return torch.softmax(logits.float(), dim=1)[0].cpu().numpy()


def segment(params: dict, data: Path, model_path: Path, out_dir: Path, split: str = "val",
            shard: tuple[int, int] = (0, 1), workers: int = 1, device: str | None = None) -> int:
    """Label maps of shard ``shard`` = (i, n) of ``split`` (module docstring for the layout); returns the
    number of images. An unsharded run (n = 1) also writes each folder's ``index.json`` (the gather step)."""
    from tqdm import tqdm

    settings = params["deeplab"]
    manifest = DatasetManifest.load(data)
    all_ids = manifest.ids(split)
    ids = shard_ids(all_ids, shard)
    out_dir = Path(out_dir)
    with_crf = bool(settings["crf"])
    if split == "test":
        folders = {"final": out_dir / VOC_SERVER_DIR}
    else:
        folders = {"pred": out_dir / PRED_DIR, **({"crf": out_dir / CRF_DIR} if with_crf else {})}
    with torch_threads(workers):
        model = load_deeplab(model_path, num_classes=manifest.num_classes, device=select_device(device))
        start = time.perf_counter()
        run = run_record("segment", {"split": split, "flip": settings["flip"], "crf": with_crf}, model=model_path,
                         data=data_input(data))
        # Each label folder records its shards (the gather step checks them), out_dir too (the job's output).
        with sharded_output([*folders.values(), out_dir], shard, ids, run):
            for image_id in tqdm(ids, desc=f"segment {split} {shard[0] + 1}-of-{shard[1]}", unit="img",
                                 mininterval=2.0):
                image = read_image(manifest.image_path(split, image_id))
                probs = predict_probabilities(model, image, flip=settings["flip"])
                labels = {"pred": probs.argmax(axis=0).astype(np.uint8)}
                if with_crf:
                    labels["crf"] = crf_inference_probabilities(image, probs)
                if split == "test":
                    labels = {"final": labels["crf" if with_crf else "pred"]}
                for kind, folder in folders.items():
                    save_label_png(folder / f"{image_id}.png", labels[kind])
        elapsed = time.perf_counter() - start
    if shard[1] == 1:
        for folder in folders.values():
            gather(folder, all_ids, ".png", split)
    log.info("segment: %d images of %s shard %d-of-%d in %.1f s (%s%s)", len(ids), split, shard[0] + 1, shard[1],
             elapsed, "flip, " if settings["flip"] else "", "CRF" if with_crf else "no CRF")
    return len(ids)


# ----------------------------------------------------------------------------------------------
# Evaluation and pictures
# ----------------------------------------------------------------------------------------------

def eval_seg(data: Path, pred_dir: Path, out_dir: Path, split: str = "val") -> dict:
    """Score the label maps of ``pred_dir`` against the GT of ``split`` (docs/method.md G.3): GT 255 ignored, a
    predicted 255 is an error. Writes ``summary.json`` (mIoU, pixel and mean accuracy, FW-IoU, …),
    ``per_class.csv`` and its page for the report, ``per_class.html``, into ``out_dir``; returns the summary."""
    manifest = DatasetManifest.load(data)
    ids = manifest.ids(split)
    paths = label_files(pred_dir, ids)
    matrix = ConfusionMatrix(manifest.num_classes, IGNORE_INDEX, pred_ignore="error")
    for image_id, path in zip(ids, paths):
        gt = read_mask(manifest.mask_path(split, image_id))
        try:
            pred = read_label_png(path)
        except (OSError, ValueError) as exc:
            raise SipeError(f"{path}: cannot read prediction ({exc})") from None
        matrix.update(gt, pred, where=str(path))
    scores = matrix.scores(manifest.classes)
    out_dir = Path(out_dir)
    write_scores(scores, out_dir / "summary.json", out_dir / "per_class.csv")
    write_per_class_html(out_dir / "per_class.html", per_class_table(scores),
                         f"DeepLabV2 on {split}, {Path(pred_dir).name}: per-class scores ({manifest.name})")
    log.info("eval-seg %s on %s (%d images): mIoU %.4f, pixel acc %.4f, mean acc %.4f, FW-IoU %.4f", pred_dir,
             split, len(ids), scores["mIoU"], scores["pixel_acc"], scores["mean_acc"], scores["fw_iou"])
    return scores


def label_sheet(data: Path, split: str, folders: Sequence[Path], titles: Sequence[str], out_png: Path,
                samples: int) -> None:
    """Contact sheet of the first ``samples`` images of ``split``: per row the image with its GT, then
    each folder's label map (tiles of :func:`sipe.viz.contact_sheet`)."""
    if len(titles) != len(folders):
        raise SipeError(f"need one title per label folder, got {len(titles)} titles for {len(folders)} folders")
    manifest = DatasetManifest.load(data)
    ids = manifest.ids(split)[:samples]
    paths = [label_files(folder, ids) for folder in folders]
    images, masks, captions = [], [], []
    for n, image_id in enumerate(ids):
        image = read_image(manifest.image_path(split, image_id))
        gt = read_mask(manifest.mask_path(split, image_id))
        tiles = [(image, gt, f"{image_id}: ground truth")]
        for title, folder_paths in zip(titles, paths):
            labels = read_label_png(folder_paths[n])
            score = _image_miou(gt, labels, manifest.num_classes)
            tiles.append((image, labels, f"{title} (image mIoU {100 * score:.0f})"))
        for tile in tiles:
            images.append(tile[0])
            masks.append(tile[1])
            captions.append(tile[2])
    save_png(out_png, contact_sheet(images, masks, captions, columns=1 + len(folders),
                                    class_names=manifest.classes))


def _image_miou(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> float:
    """mIoU of one image (classes with GT pixels), with a predicted 255 counted as background."""
    return ConfusionMatrix(num_classes).update(gt, pred).scores([str(c) for c in range(num_classes)])["mIoU"]
