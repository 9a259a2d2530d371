"""``sipe``: one subcommand per pipeline stage.

Each subcommand takes its inputs and outputs as paths and its settings from ``params.yaml``, so
Snakemake rules, DVC stages and people run the same thing. Errors in the input (a bad setting, a
broken dataset) end with one line on stderr naming the file or key, and exit status 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from sipe import __version__
from sipe.errors import SipeError


def _default_workers() -> int:
    return len(os.sched_getaffinity(0))


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), metavar="FILE",
                        help="settings file checked against workflow/schemas/params.schema.yaml (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=_default_workers(), metavar="N",
                        help="worker processes for per-image work (default: the CPUs available, %(default)s)")
    parser.add_argument("--log", type=Path, metavar="FILE", help="also write the log to FILE")


def _prepare_data(args, params):
    from sipe.stages.data import prepare_data

    prepare_data(params, args.out, args.workers)


def _dataset_report(args, params):
    from sipe.stages.data import dataset_report

    dataset_report(params, args.data, args.out, args.workers)


def _validate_data(args, params):
    from sipe.data.manifest import DatasetManifest
    from sipe.data.validate import validate_dataset

    manifest = DatasetManifest.load(args.data)
    validate_dataset(manifest, workers=args.workers)
    print(f"{args.data}: ok ({', '.join(f'{r} {len(manifest.ids(r))}' for r in manifest.splits)} images)")


def _train_sipe(args, params):
    from sipe.stages.train_sipe import train_sipe

    train_sipe(params, args.data, args.out, args.workers, device=args.device,
               gsc=False if args.variant == "nogsc" else None, init=args.init)


def _pretrain_backbone(args, params):
    from sipe.stages.pretrain import pretrain_backbone

    pretrain_backbone(params, args.data, args.out, args.workers, device=args.device)


def _make_cams(args, params):
    from sipe.stages.cams import make_cams
    from sipe.stages.shards import parse_shard

    make_cams(params, args.data, args.model, args.out, role=args.role, shard=parse_shard(args.shard),
              workers=args.workers, device=args.device)


def _gather_maps(args, params):
    from sipe.data.manifest import DatasetManifest
    from sipe.stages.shards import gather

    gather(args.maps, DatasetManifest.load(args.data).ids(args.role), ".npz", args.role)


def _cam_overlays(args, params):
    from sipe.stages.cams import cam_overlays

    cam_overlays(params, args.data, args.maps, args.out)


def _eval_cams(args, params):
    from sipe.stages.cams import eval_cams

    eval_cams(params, args.data, args.maps, args.out)


def _localisation_table(args, params):
    from sipe.stages.tables import localisation_table, write_table

    table = localisation_table(args.summaries, params["dataset"])
    write_table(table, args.out, f"Localisation maps on the train split ({params['dataset']})")
    print(table.to_string(index=False))


def _crf(args, params):
    from sipe.stages.refine import crf_labels
    from sipe.stages.shards import parse_shard

    crf_labels(params, args.data, args.maps, args.out, shard=parse_shard(args.shard), workers=args.workers)


def _ir_labels(args, params):
    from sipe.stages.refine import ir_labels
    from sipe.stages.shards import parse_shard

    ir_labels(params, args.data, args.maps, args.crf, args.out, shard=parse_shard(args.shard), workers=args.workers)


def _train_irn(args, params):
    from sipe.stages.train_irn import train_irn

    train_irn(params, args.data, args.labels, args.out, args.workers, device=args.device, init=args.init)


def _pseudo_labels(args, params):
    from sipe.stages.refine import pseudo_labels
    from sipe.stages.shards import parse_shard

    pseudo_labels(params, args.data, args.maps, args.model, args.out, shard=parse_shard(args.shard),
                  workers=args.workers, device=args.device)


def _gather_labels(args, params):
    from sipe.stages.refine import gather_labels

    gather_labels(args.data, args.labels, args.role)


def _eval_labels(args, params):
    from sipe.stages.refine_eval import eval_labels

    eval_labels(args.data, args.labels, args.out)


def _refinement_table(args, params):
    from sipe.stages.refine_eval import refinement_table
    from sipe.stages.tables import write_table

    table = refinement_table(args.cams_eval, args.crf_eval, args.ir_eval, args.pseudo_eval, params["dataset"])
    write_table(table, args.out, f"Pseudo labels on the train split ({params['dataset']}): mIoU and pixel shares in %")
    print(table.to_string(index=False))


def _train_deeplab(args, params):
    from sipe.stages.deeplab import train_deeplab

    train_deeplab(params, args.data, args.labels, args.out, args.workers, device=args.device, init=args.init)


def _segment(args, params):
    from sipe.stages.deeplab import segment
    from sipe.stages.shards import parse_shard

    segment(params, args.data, args.model, args.out, split=args.split, shard=parse_shard(args.shard),
            workers=args.workers, device=args.device)


def _eval_seg(args, params):
    from sipe.stages.deeplab import eval_seg

    eval_seg(args.data, args.pred, args.out, split=args.split)


def _seg_sheet(args, params):
    from sipe.stages.deeplab import label_sheet

    label_sheet(args.data, args.split, args.labels, args.titles, args.out, params["deeplab"]["sheet_samples"])


def _summary_table(args, params):
    from sipe.stages.summary import summary_table
    from sipe.stages.tables import write_table

    table = summary_table({"localisation": args.localisation, "crf": args.crf, "pseudo": args.pseudo,
                           "deeplab": args.deeplab, "deeplab_crf": args.deeplab_crf}, params["dataset"])
    write_table(table, args.out, f"SIPE pipeline results ({params['dataset']}): mIoU in %")
    print(table.to_string(index=False))


def _convert_deeplab_init(args, params):
    from sipe.models.deeplab import convert_deeplab_init

    count = convert_deeplab_init(args.src, args.out)
    print(f"{args.src} -> {args.out} ({count} tensors; train with deeplab.style: caffe)")


def _convert_checkpoint(args, params):
    from sipe.models.convert import convert_reference_checkpoint

    convert_reference_checkpoint(args.src, args.out)
    print(f"{args.src} -> {args.out}")


def _check_params(args, params):
    print(f"{args.params}: ok (dataset: {params['dataset']})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sipe", description="sipe-pipeline: one command per stage of the SIPE weakly supervised segmentation pipeline.",
        epilog="Run `sipe <command> --help` for the options of a stage.")
    parser.add_argument("--version", action="version", version=f"sipe-pipeline {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")

    def command(name, func, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        _common(p)
        p.set_defaults(func=func)
        return p

    p = command("prepare-data", _prepare_data,
                "Build the dataset that params.yaml `dataset` names (synthetic, voc or coco) as a prepared "
                "dataset in VOC layout with dataset.json; validated before it is moved into place.")
    p.add_argument("--out", type=Path, required=True, help="output folder, e.g. data/synthetic")

    p = command("dataset-report", _dataset_report,
                "Validate a prepared dataset and write stats.json, class_stats.csv and contact_sheet.png.")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder (holds dataset.json)")
    p.add_argument("--out", type=Path, required=True, help="output folder, e.g. results/synthetic/dataset")

    p = command("validate-data", _validate_data,
                "Check a prepared dataset: id lists, images, masks (values, sizes) and class labels.")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder (holds dataset.json)")

    p = command("train-sipe", _train_sipe,
                "Train the SIPE classifier (IPE + GSC) on train_aug; resumes from OUT/resume.pt if a run was killed.")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    p.add_argument("--out", type=Path, required=True, help="output folder: model.pt, steps.csv, train.json, loss.png")
    p.add_argument("--variant", choices=("sipe", "nogsc"), default="sipe",
                   help="sipe: the settings of params.yaml; nogsc: the same without the GSC loss (paper Tab. 4)")
    p.add_argument("--init", type=Path, help="pre-trained backbone file, used when sipe.weights is 'pretrain'")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA if available, else CPU)")

    p = command("pretrain-backbone", _pretrain_backbone,
                "Pre-train the backbone on train_aug image labels (stand-in for ImageNet, sipe.weights: pretrain).")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    p.add_argument("--out", type=Path, required=True, help="output folder: backbone.pth, steps.csv, loss.png")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA if available, else CPU)")

    p = command("make-cams", _make_cams,
                "Multi-scale + flip CAM and IS-CAM maps of a split (or one shard of it), one .npz per image.")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    p.add_argument("--model", type=Path, required=True, help="SIPE checkpoint (model.pt)")
    p.add_argument("--out", type=Path, required=True, help="map folder")
    p.add_argument("--role", default="train_aug",
                   help="split to make maps for: train_aug (refinement needs it) or train (scoring only) (default: %(default)s)")
    p.add_argument("--shard", default="1-of-1", help="K-of-N: process every N-th image from the K-th (default: all)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA if available, else CPU)")

    p = command("gather-maps", _gather_maps,
                "Check that every image of a split has its map in a map folder; write its index.json.")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    p.add_argument("--maps", type=Path, required=True, help="map folder")
    p.add_argument("--role", default="train_aug", help="split the maps were made for (default: %(default)s)")

    p = command("cam-overlays", _cam_overlays, "CAM vs IS-CAM overlays of the first images of the train split (PNG).")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    p.add_argument("--maps", type=Path, required=True, help="map folder")
    p.add_argument("--out", type=Path, required=True, help="PNG file")

    p = command("eval-cams", _eval_cams,
                "mIoU of IS-CAM and of the CAM baseline (background-threshold sweep) on the train split.")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    p.add_argument("--maps", type=Path, required=True, help="map folder")
    p.add_argument("--out", type=Path, required=True, help="output folder")

    p = command("localisation-table", _localisation_table,
                "Paper Tab. 4 side by side: CAM baseline, IS-CAM without GSC, SIPE (CSV + Markdown).")
    p.add_argument("--summaries", type=Path, nargs="+", required=True,
                   help="<results>/<variant>/eval_cams/summary.json files")
    p.add_argument("--out", type=Path, required=True, help="CSV file; the Markdown table goes next to it")

    p = command("crf", _crf,
                "denseCRF label maps keys[CRF(argmax IS-CAM)] of train_aug (or one shard): the '+dCRF' labels (SPEC E).")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    p.add_argument("--maps", type=Path, required=True, help="IS-CAM map folder (make-cams)")
    p.add_argument("--out", type=Path, required=True, help="label folder: <id>.png")
    p.add_argument("--shard", default="1-of-1", help="K-of-N: process every N-th image from the K-th (default: all)")

    p = command("ir-labels", _ir_labels,
                "IR labels of train_aug (or one shard): confident foreground / background, 255 elsewhere (SPEC F.1).")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    p.add_argument("--maps", type=Path, required=True, help="IS-CAM map folder (make-cams)")
    p.add_argument("--crf", type=Path, required=True, help="label folder of the crf stage (the first CRF pass)")
    p.add_argument("--out", type=Path, required=True, help="label folder: <id>.png")
    p.add_argument("--shard", default="1-of-1", help="K-of-N: process every N-th image from the K-th (default: all)")

    p = command("train-irn", _train_irn,
                "Train IRN (boundary + displacement branches, frozen backbone) on the IR labels of train_aug; "
                "resumes from OUT/resume.pt if a run was killed.")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    p.add_argument("--labels", type=Path, required=True, help="IR label folder (ir-labels)")
    p.add_argument("--out", type=Path, required=True, help="output folder: model.pt, train/ (steps.csv, train.json, loss.png)")
    p.add_argument("--init", type=Path, help="pre-trained backbone file, used when sipe.weights is 'pretrain'")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA if available, else CPU)")

    p = command("pseudo-labels", _pseudo_labels,
                "Random-walk pseudo labels of train_aug (or one shard) from IS-CAM and IRN boundaries (SPEC F.5).")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    p.add_argument("--maps", type=Path, required=True, help="IS-CAM map folder (make-cams)")
    p.add_argument("--model", type=Path, required=True, help="IRN checkpoint (train-irn's model.pt)")
    p.add_argument("--out", type=Path, required=True, help="label folder: <id>.png")
    p.add_argument("--shard", default="1-of-1", help="K-of-N: process every N-th image from the K-th (default: all)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA if available, else CPU)")

    p = command("gather-labels", _gather_labels,
                "Check that every image of a split has its label PNG in a label folder; write its index.json.")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    p.add_argument("--labels", type=Path, required=True, help="label folder")
    p.add_argument("--role", default="train_aug", help="split the labels were made for (default: %(default)s)")

    p = command("eval-labels", _eval_labels,
                "Score a label folder on the train split: mIoU (255 = background), coverage, confident-pixel "
                "mIoU and precision (summary.json, per_class.csv).")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    p.add_argument("--labels", type=Path, required=True, help="label folder: <id>.png")
    p.add_argument("--out", type=Path, required=True, help="output folder")

    p = command("refinement-table", _refinement_table,
                "IS-CAM -> +dCRF -> IR labels -> IRN pseudo labels on the train split, beside the paper (CSV + Markdown).")
    p.add_argument("--cams-eval", type=Path, required=True, help="<results>/sipe/eval_cams/summary.json")
    p.add_argument("--crf-eval", type=Path, required=True, help="<results>/refine/crf_eval/summary.json")
    p.add_argument("--ir-eval", type=Path, required=True, help="<results>/refine/ir_labels_eval/summary.json")
    p.add_argument("--pseudo-eval", type=Path, help="<results>/refine/pseudo_labels_eval/summary.json (refine.method irn)")
    p.add_argument("--out", type=Path, required=True, help="CSV file; the Markdown table goes next to it")

    p = command("train-deeplab", _train_deeplab,
                "Train DeepLabV2 (MSC, frozen BN) on the pseudo labels of train_aug (SPEC G.2); resumes from "
                "OUT/resume.pt if a run was killed.")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    p.add_argument("--labels", type=Path, required=True, help="label folder: <id>.png for every train_aug id")
    p.add_argument("--out", type=Path, required=True, help="output folder: model.pt, train/ (steps.csv, train.json, loss.png)")
    p.add_argument("--init", type=Path, help="pre-trained backbone file, used when deeplab.weights is 'pretrain'")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA if available, else CPU)")

    p = command("segment", _segment,
                "DeepLab label maps of a split (or one shard): MSC, optional flip and denseCRF (SPEC G.3, G.4); "
                "OUT/pred/ and OUT/crf/, or the VOC server layout for the test split.")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    p.add_argument("--model", type=Path, required=True, help="DeepLab checkpoint (train-deeplab's model.pt)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--split", default="val", help="split to segment: val, or test for VOC (default: %(default)s)")
    p.add_argument("--shard", default="1-of-1", help="K-of-N: process every N-th image from the K-th (default: all)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA if available, else CPU)")

    p = command("eval-seg", _eval_seg,
                "Score label maps against the GT of a split: per-class IoU, mIoU, pixel and mean accuracy, "
                "FW-IoU (summary.json, per_class.csv).")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    p.add_argument("--pred", type=Path, required=True, help="label folder: <id>.png")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--split", default="val", help="split with GT masks (default: %(default)s)")

    p = command("seg-sheet", _seg_sheet,
                "Contact sheet: the first images of a split with their GT and the label maps of each folder (PNG).")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    p.add_argument("--split", required=True, help="split with GT masks")
    p.add_argument("--labels", type=Path, nargs="+", required=True, help="label folders: <id>.png")
    p.add_argument("--titles", nargs="+", required=True, help="one caption per label folder")
    p.add_argument("--out", type=Path, required=True, help="PNG file")

    p = command("summary-table", _summary_table,
                "The pipeline's rows side by side (localisation maps, +dCRF, pseudo labels, DeepLab val), beside "
                "the paper for VOC and COCO (CSV + Markdown).")
    p.add_argument("--localisation", type=Path, help="<results>/sipe/eval_cams/summary.json")
    p.add_argument("--crf", type=Path, help="<results>/refine/crf_eval/summary.json")
    p.add_argument("--pseudo", type=Path, help="summary.json of the labels DeepLab trains on")
    p.add_argument("--deeplab", type=Path, help="<results>/deeplab/val/eval_pred/summary.json")
    p.add_argument("--deeplab-crf", type=Path, help="<results>/deeplab/val/eval_crf/summary.json")
    p.add_argument("--out", type=Path, required=True, help="CSV file; the Markdown table goes next to it")

    p = command("convert-deeplab-init", _convert_deeplab_init,
                "Convert deeplab-pytorch's ResNet-101 initialisation (deeplabv1_resnet101-coco.pth) into a "
                "torchvision-format file for deeplab.weights.")
    p.add_argument("--src", type=Path, required=True, help="deeplab-pytorch .pth file")
    p.add_argument("--out", type=Path, required=True, help="torchvision-format ResNet-101 state dict to write")

    p = command("convert-checkpoint", _convert_checkpoint,
                "Convert the SIPE authors' checkpoint ({'net': state_dict}, ResNet-50) into a model.pt of this pipeline.")
    p.add_argument("--src", type=Path, required=True, help="the authors' .pth file (e.g. final.pth)")
    p.add_argument("--out", type=Path, required=True, help="model.pt to write")

    command("check-params", _check_params, "Check the params file against the schema.")
    return parser


def _setup_logging(log_file: Path | None) -> None:
    # Under torchrun (sipe.distributed) rank 0 owns the log file; the other ranks print warnings only.
    rank = int(os.environ.get("RANK", "0"))
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None and rank == 0:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s " + (f"rank {rank} " if rank else "") + "%(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    _setup_logging(args.log)
    try:
        from sipe.config import load_params

        params = load_params(args.params)
        args.func(args, params)
    except SipeError as exc:
        message = f"sipe {args.command}: error: {exc}"
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler):  # the log file gets the error too
                handler.handle(logging.makeLogRecord({"name": "sipe", "msg": message, "levelno": logging.ERROR, "levelname": "ERROR"}))
        print(message, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
