"""``sipe``: one subcommand per pipeline stage, each declared once in :data:`COMMANDS`.

Each command takes its inputs and outputs as paths, so Snakemake rules, DVC stages and people run
the same thing. Only the commands that use settings take ``--params`` and read that file. Errors in
the input (a bad setting, a broken dataset) end with one line on stderr naming the file or key, and
exit status 1.

To add a command, add a :class:`Command` to the table: its options come from the shared
:class:`Option` definitions below (call one to change a keyword, e.g. its help, for that command),
and ``run(stage, args, params)`` calls the stage function, ``stage`` being ``module`` imported when
the command runs (``params`` is ``None`` for a command without ``--params``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from sipe import __version__
from sipe.errors import SipeError, one_line


class Option:
    """One option: its flag and :meth:`argparse.ArgumentParser.add_argument` keywords."""

    def __init__(self, flag: str, **spec: Any) -> None:
        self.flag, self.spec = flag, spec

    def __call__(self, **changes: Any) -> Option:
        """The same option with some keywords changed (e.g. a help text for one command)."""
        return Option(self.flag, **{**self.spec, **changes})

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Add this option to ``parser``."""
        parser.add_argument(self.flag, **self.spec)


# --- options shared by the commands, each defined once -------------------------------------------

PARAMS = Option("--params", type=Path, default=Path("params.yaml"), metavar="FILE",
                help="settings file checked against workflow/schemas/params.schema.yaml (default: %(default)s)")
WORKERS = Option("--workers", type=int, default=len(os.sched_getaffinity(0)), metavar="N",
                 help="worker processes for per-image work (default: the CPUs available, %(default)s)")
LOG = Option("--log", type=Path, metavar="FILE", help="also write the log to FILE")
COMMON = (WORKERS, LOG)  # every command takes these

DATA = Option("--data", type=Path, required=True, help="prepared dataset folder (holds dataset.json)")
OUT = Option("--out", type=Path, required=True, help="output folder")
MAPS = Option("--maps", type=Path, required=True, help="map folder of make-cams: <id>.npz with CAM and IS-CAM")
LABELS = Option("--labels", type=Path, required=True, help="label folder: <id>.png")
MODEL = Option("--model", type=Path, required=True, help="checkpoint (model.pt)")
INIT = Option("--init", type=Path, help="pre-trained backbone file, used when sipe.weights is 'pretrain'")
DEVICE = Option("--device", help="cpu, cuda or cuda:N (default: CUDA if available, else CPU)")
SHARD = Option("--shard", default="1-of-1", help="K-of-N: process every N-th image from the K-th (default: all)")
ROLE = Option("--role", default="train_aug", help="split the files were made for (default: %(default)s)")
SPLIT = Option("--split", default="val", help="split with GT masks (default: %(default)s)")
SRC = Option("--src", type=Path, required=True, help="checkpoint file to convert")

IMAGES = Option("--images", nargs="+", required=True, metavar="PATH",
                help="image files (JPEG/PNG), folders, globs (quoted) or list files (.txt, one path a line)")
CLASS_DATA = DATA(required=False, help="prepared dataset whose class names to use (default: the checkpoint's, "
                                       "else 'class N')")
ON_ERROR = Option("--on-error", choices=("stop", "skip"), default="stop",
                  help="an unreadable, empty or too large image stops the run or is skipped (default: %(default)s)")
MAX_PIXELS = Option("--max-pixels", type=int, default=50_000_000, metavar="N",
                    help="refuse images with more pixels (default: %(default)s)")

STAGE = (PARAMS, DATA)  # a stage that reads settings and a prepared dataset
TRAIN_OUT = OUT(help="output folder: model.pt, train/ (steps.csv, train.json, loss.png)")
LABEL_OUT = OUT(help="label folder: <id>.png")
TABLE_OUT = OUT(help="CSV file; the Markdown table goes next to it")
PNG_OUT = OUT(help="PNG file")


def _summary(flag: str, path: str, required: bool = False) -> Option:
    """A ``summary.json`` that a results table reads; ``path`` says which."""
    return Option(flag, type=Path, required=required, help=path)


# --- glue between parsed arguments and stage functions (imports are lazy: `sipe --help` stays fast) --

def _shard(args: argparse.Namespace) -> tuple[int, int]:
    """``--shard K-of-N`` as the (index, count) pair that the stages take."""
    from sipe.stages.shards import parse_shard

    return parse_shard(args.shard)


def _manifest(data: Path):
    """The manifest (``dataset.json``) of a prepared dataset."""
    from sipe.data.manifest import DatasetManifest

    return DatasetManifest.load(data)


def _dvc_yaml(stage, check: bool) -> None:
    """``sipe dvc-yaml``: write dvc.yaml, or with ``check`` fail if it is not the generated one."""
    if stage.write(check=check) and check:
        raise SipeError("dvc.yaml is not the one generated from the Snakemake workflow: run `sipe dvc-yaml`")


def _table(table, out: Path, title: str) -> None:
    """Write a results table as CSV + Markdown and print it."""
    from sipe.stages.tables import write_table

    write_table(table, out, title)
    print(table.to_string(index=False))


def _validate_data(stage: ModuleType, args: argparse.Namespace, params: None) -> None:
    """Validate a dataset and print its split sizes."""
    manifest = _manifest(args.data)
    stage.validate_dataset(manifest, workers=args.workers)
    counts = ", ".join(f"{role} {len(manifest.ids(role))}" for role in manifest.splits)
    print(f"{args.data}: ok ({counts} images)")


def _convert_deeplab_init(stage: ModuleType, args: argparse.Namespace, params: None) -> None:
    """Convert deeplab-pytorch's initialisation and say how many tensors it holds."""
    count = stage.convert_deeplab_init(args.src, args.out)
    print(f"{args.src} -> {args.out} ({count} tensors; train with deeplab.style: caffe)")


def _convert_checkpoint(stage: ModuleType, args: argparse.Namespace, params: None) -> None:
    """Convert the authors' SIPE checkpoint."""
    stage.convert_reference_checkpoint(args.src, args.out)
    print(f"{args.src} -> {args.out}")


def _preset(stage: ModuleType, args: argparse.Namespace, params: dict) -> None:
    """Apply a preset to the params file and say which keys changed."""
    changed = stage.apply_preset(args.name, args.params)
    print(f"{args.params}: preset {args.name}: " + (f"{len(changed)} keys changed: {', '.join(changed)}"
                                                      if changed else "already set, nothing changed"))
    workdir = Path(args.params).parent
    if changed and Path(args.params).name == "params.yaml" and (workdir / "Snakefile").is_file():
        from snakemake.exceptions import WorkflowError

        from sipe.dvc_stages import write

        try:  # dvc.yaml follows the workflow's new shape (sipe/dvc_stages.py)
            print("dvc.yaml: regenerated" if write(workdir) else "dvc.yaml: already current")
        except (WorkflowError, SipeError) as exc:
            print(f"dvc.yaml: not regenerated yet ({one_line(exc, limit=200)}); ./run.sh regenerates it")


# --- the commands ------------------------------------------------------------------------------

Run = Callable[[ModuleType, argparse.Namespace, "dict | None"], object]


@dataclass(frozen=True)
class Command:
    """A subcommand: ``module`` implements it, ``run(module, args, params)`` calls it.

    Everything ``run`` calls lies in the import closure of ``module`` (sipe/sources.py derives each rule's
    code inputs from it); only ``sipe.config``, which reads ``--params``, is outside."""

    name: str
    module: str
    help: str
    options: tuple[Option, ...]
    run: Run

    @property
    def reads_params(self) -> bool:
        """Whether the command uses settings, i.e. takes ``--params`` and reads that file."""
        return any(option.flag == PARAMS.flag for option in self.options)

    def execute(self, args: argparse.Namespace) -> None:
        """Read the settings (if used) before importing the module, so a bad file fails fast; under DVC, also
        check that dvc.yaml was generated for them (:func:`sipe.dvc_stages.check_shape`)."""
        params = None
        if self.reads_params:
            from sipe.config import load_params
            from sipe.dvc_stages import check_shape

            params = load_params(args.params)
            check_shape(params)
        self.run(importlib.import_module(self.module), args, params)


_COMMANDS = (
    Command("prepare-data", "sipe.stages.data",
            "Build the dataset that params.yaml `dataset` names (synthetic, voc or coco) as a prepared dataset "
            "in VOC layout with dataset.json; validated before it is moved into place.",
            (PARAMS, OUT(help="output folder, e.g. data/synthetic")),
            lambda stage, a, p: stage.prepare_data(p, a.out, a.workers)),
    Command("dataset-report", "sipe.stages.data",
            "Validate a prepared dataset and write stats.json, class_stats.csv and contact_sheet.png.",
            (*STAGE, OUT(help="output folder, e.g. results/synthetic/dataset")),
            lambda stage, a, p: stage.dataset_report(p, a.data, a.out, a.workers)),
    Command("validate-data", "sipe.data.validate",
            "Check a prepared dataset: id lists, images, masks (values, sizes) and class labels.",
            (DATA,), _validate_data),
    Command("train-sipe", "sipe.stages.train_sipe",
            "Train the SIPE classifier (IPE + GSC) on train_aug; resumes from OUT/resume.pt if a run was killed.",
            (*STAGE, TRAIN_OUT, INIT, DEVICE,
             Option("--variant", choices=("sipe", "nogsc"), default="sipe",
                    help="sipe: the settings of params.yaml; nogsc: the same without the GSC loss (paper Tab. 4)")),
            lambda stage, a, p: stage.train_sipe(p, a.data, a.out, a.workers, device=a.device, init=a.init,
                                                 variant=a.variant)),
    Command("pretrain-backbone", "sipe.stages.pretrain",
            "Pre-train the backbone on train_aug image labels (stand-in for ImageNet, sipe.weights: pretrain).",
            (*STAGE, OUT(help="output folder: backbone.pth, train/ (steps.csv, train.json, loss.png)"), DEVICE),
            lambda stage, a, p: stage.pretrain_backbone(p, a.data, a.out, a.workers, device=a.device)),
    Command("make-cams", "sipe.stages.cams",
            "Multi-scale + flip CAM and IS-CAM maps of a split (or one shard of it), one .npz per image.",
            (*STAGE, MODEL(help="SIPE checkpoint (train-sipe's model.pt)"), OUT(help="map folder"), SHARD, DEVICE,
             ROLE(help="split to make maps for: train_aug (refinement needs it) or train (scoring only) "
                       "(default: %(default)s)")),
            lambda stage, a, p: stage.make_cams(p, a.data, a.model, a.out, role=a.role, shard=_shard(a),
                                                workers=a.workers, device=a.device)),
    Command("gather-maps", "sipe.stages.shards",
            "Check that every image of a split has its map in a map folder; write its index.json.",
            (DATA, MAPS, ROLE),
            lambda stage, a, p: stage.gather_split(a.data, a.maps, ".npz", a.role)),
    Command("cam-overlays", "sipe.stages.cams", "CAM vs IS-CAM overlays of the first images of the train split (PNG).",
            (*STAGE, MAPS, PNG_OUT),
            lambda stage, a, p: stage.cam_overlays(p, a.data, a.maps, a.out)),
    Command("eval-cams", "sipe.stages.cams",
            "mIoU of IS-CAM and of the CAM baseline (background-threshold sweep) on the train split.",
            (*STAGE, MAPS, OUT),
            lambda stage, a, p: stage.eval_cams(p, a.data, a.maps, a.out)),
    Command("localisation-table", "sipe.stages.tables",
            "Paper Tab. 4 side by side: CAM baseline, IS-CAM without GSC, SIPE (CSV + Markdown).",
            (PARAMS, TABLE_OUT, Option("--summaries", type=Path, nargs="+", required=True,
                                       help="<results>/<variant>/eval_cams/summary.json files")),
            lambda stage, a, p: _table(stage.localisation_table(a.summaries, p["dataset"]), a.out,
                                       f"Localisation maps on the train split ({p['dataset']})")),
    Command("crf", "sipe.stages.refine",
            "denseCRF label maps keys[CRF(argmax IS-CAM)] of train_aug (or one shard): the '+dCRF' labels (docs/method.md E).",
            (*STAGE, MAPS, LABEL_OUT, SHARD),
            lambda stage, a, p: stage.crf_labels(p, a.data, a.maps, a.out, shard=_shard(a), workers=a.workers)),
    Command("ir-labels", "sipe.stages.refine",
            "IR labels of train_aug (or one shard): confident foreground / background, 255 elsewhere (docs/method.md F.1).",
            (*STAGE, MAPS, LABEL_OUT, SHARD,
             Option("--crf", type=Path, required=True, help="label folder of the crf stage (the first CRF pass)")),
            lambda stage, a, p: stage.ir_labels(p, a.data, a.maps, a.crf, a.out, shard=_shard(a), workers=a.workers)),
    Command("train-irn", "sipe.stages.train_irn",
            "Train IRN (boundary + displacement branches, frozen backbone) on the IR labels of train_aug; resumes "
            "from OUT/resume.pt if a run was killed.",
            (*STAGE, LABELS(help="IR label folder (ir-labels)"), TRAIN_OUT, INIT, DEVICE),
            lambda stage, a, p: stage.train_irn(p, a.data, a.labels, a.out, a.workers, device=a.device, init=a.init)),
    Command("pseudo-labels", "sipe.stages.refine",
            "Random-walk pseudo labels of train_aug (or one shard) from IS-CAM and IRN boundaries (docs/method.md F.5).",
            (*STAGE, MAPS, MODEL(help="IRN checkpoint (train-irn's model.pt)"), LABEL_OUT, SHARD, DEVICE),
            lambda stage, a, p: stage.pseudo_labels(p, a.data, a.maps, a.model, a.out, shard=_shard(a),
                                                    workers=a.workers, device=a.device)),
    Command("gather-labels", "sipe.stages.shards",
            "Check that every image of a split has its label PNG in a label folder; write its index.json.",
            (DATA, LABELS, ROLE),
            lambda stage, a, p: stage.gather_split(a.data, a.labels, ".png", a.role)),
    Command("eval-labels", "sipe.stages.refine_eval",
            "Score a label folder on the train split: mIoU (255 = background), coverage, confident-pixel mIoU and "
            "precision (summary.json, per_class.csv).",
            (DATA, LABELS, OUT),
            lambda stage, a, p: stage.eval_labels(a.data, a.labels, a.out)),
    Command("refinement-table", "sipe.stages.tables",
            "IS-CAM -> +dCRF -> IR labels -> IRN pseudo labels on the train split, beside the paper (CSV + Markdown).",
            (PARAMS, TABLE_OUT, _summary("--cams-eval", "<results>/sipe/eval_cams/summary.json", required=True),
             _summary("--crf-eval", "<results>/refine/crf_eval/summary.json", required=True),
             _summary("--ir-eval", "<results>/refine/ir_labels_eval/summary.json", required=True),
             _summary("--pseudo-eval", "<results>/refine/pseudo_labels_eval/summary.json (refine.method irn)")),
            lambda stage, a, p: _table(
                stage.refinement_table(a.cams_eval, a.crf_eval, a.ir_eval, a.pseudo_eval, p["dataset"]), a.out,
                f"Pseudo labels on the train split ({p['dataset']}): mIoU and pixel shares in %")),
    Command("train-deeplab", "sipe.stages.deeplab",
            "Train DeepLabV2 (MSC, frozen BN) on the pseudo labels of train_aug (docs/method.md G.2); resumes from "
            "OUT/resume.pt if a run was killed.",
            (*STAGE, LABELS(help="label folder: <id>.png for every train_aug id"), TRAIN_OUT, DEVICE,
             INIT(help="pre-trained backbone file, used when deeplab.weights is 'pretrain'")),
            lambda stage, a, p: stage.train_deeplab(p, a.data, a.labels, a.out, a.workers, device=a.device,
                                                    init=a.init)),
    Command("segment", "sipe.stages.deeplab",
            "DeepLab label maps of a split (or one shard): MSC, optional flip and denseCRF (docs/method.md G.3, G.4); "
            "OUT/pred/ and OUT/crf/, or the VOC server layout for the test split.",
            (*STAGE, MODEL(help="DeepLab checkpoint (train-deeplab's model.pt)"), OUT, SHARD, DEVICE,
             SPLIT(help="split to segment: val, or test for VOC (default: %(default)s)")),
            lambda stage, a, p: stage.segment(p, a.data, a.model, a.out, split=a.split, shard=_shard(a),
                                              workers=a.workers, device=a.device)),
    Command("eval-seg", "sipe.stages.deeplab",
            "Score label maps against the GT of a split: per-class IoU, mIoU, pixel and mean accuracy, FW-IoU "
            "(summary.json, per_class.csv).",
            (DATA, Option("--pred", type=Path, required=True, help="label folder: <id>.png"), OUT, SPLIT),
            lambda stage, a, p: stage.eval_seg(a.data, a.pred, a.out, split=a.split)),
    Command("seg-sheet", "sipe.stages.deeplab",
            "Contact sheet: the first images of a split with their GT and the label maps of each folder (PNG).",
            (*STAGE, SPLIT(required=True, default=None, help="split with GT masks"), PNG_OUT,
             LABELS(nargs="+", help="label folders: <id>.png"),
             Option("--titles", nargs="+", required=True, help="one caption per label folder")),
            lambda stage, a, p: stage.label_sheet(a.data, a.split, a.labels, a.titles, a.out,
                                                  p["deeplab"]["sheet_samples"])),
    Command("summary-table", "sipe.stages.tables",
            "The pipeline's rows side by side (localisation maps, +dCRF, pseudo labels, DeepLab val), beside the "
            "paper for VOC and COCO (CSV + Markdown).",
            (PARAMS, TABLE_OUT, _summary("--localisation", "<results>/sipe/eval_cams/summary.json"),
             _summary("--crf", "<results>/refine/crf_eval/summary.json"),
             _summary("--pseudo", "summary.json of the labels DeepLab trains on"),
             _summary("--deeplab", "<results>/deeplab/val/eval_pred/summary.json"),
             _summary("--deeplab-crf", "<results>/deeplab/val/eval_crf/summary.json")),
            lambda stage, a, p: _table(
                stage.summary_table({"localisation": a.localisation, "crf": a.crf, "pseudo": a.pseudo,
                                     "deeplab": a.deeplab, "deeplab_crf": a.deeplab_crf}, p["dataset"]),
                a.out, f"SIPE pipeline results ({p['dataset']}): mIoU in %")),
    Command("headline-metrics", "sipe.stages.ledger",
            "The few numbers `dvc exp show` compares (docs/reproducing.md): the paper's table rows and the final "
            "training losses, as one JSON file.",
            (OUT(help="JSON file, e.g. <results>/metrics.json"),
             Option("--eval-cams", type=Path, nargs="+", required=True, metavar="FILE",
                    help="<results>/<variant>/eval_cams/summary.json files"),
             Option("--eval-labels", type=Path, nargs="*", default=[], metavar="FILE",
                    help="<results>/refine/<labels>_eval/summary.json files"),
             Option("--eval-seg", type=Path, nargs="*", default=[], metavar="FILE",
                    help="<results>/deeplab/eval/<kind>/summary.json files"),
             Option("--training", type=Path, nargs="*", default=[], metavar="FILE",
                    help="train/train.json of each trained network")),
            lambda stage, a, p: stage.write_headline_metrics(a.out, eval_cams=a.eval_cams, eval_labels=a.eval_labels,
                                                             eval_seg=a.eval_seg, trainings=a.training)),
    Command("convert-deeplab-init", "sipe.models.convert",
            "Convert deeplab-pytorch's ResNet-101 initialisation (deeplabv1_resnet101-coco.pth) into a "
            "torchvision-format file for deeplab.weights.",
            (SRC(help="deeplab-pytorch .pth file"), OUT(help="torchvision-format ResNet-101 state dict to write")),
            _convert_deeplab_init),
    Command("convert-checkpoint", "sipe.models.convert",
            "Convert the SIPE authors' checkpoint ({'net': state_dict}, ResNet-50) into a model.pt of this pipeline.",
            (SRC(help="the authors' .pth file (e.g. final.pth)"), OUT(help="model.pt to write")),
            _convert_checkpoint),
    Command("predict", "sipe.stages.predict",
            "DeepLab label maps of your own images (folders, globs, list files; any size and mode): OUT/<name>.png, "
            "optional overlays with a class legend and per-class pixel shares (docs/method.md G.3, G.4).",
            (PARAMS, MODEL(help="DeepLab checkpoint (train-deeplab's model.pt)"), IMAGES, OUT, CLASS_DATA, DEVICE,
             Option("--flip", action=argparse.BooleanOptionalAction,
                    help="also segment the mirrored image (default: params.yaml deeplab.flip)"),
             Option("--crf", action=argparse.BooleanOptionalAction,
                    help="denseCRF on the probabilities (default: params.yaml deeplab.crf)"),
             Option("--msc", action=argparse.BooleanOptionalAction, default=True,
                    help="multi-scale inputs of the checkpoint (default: on, as the segment stage)"),
             Option("--overlay", action="store_true", help="also write OUT/overlays/<name>.png with a class legend"),
             Option("--shares", action="store_true", help="also write OUT/shares.csv: pixel share of each class"),
             ON_ERROR, MAX_PIXELS),
            lambda stage, a, p: stage.predict_images(
                p, a.model, a.images, a.out, data=a.data, flip=a.flip, crf=a.crf, msc=a.msc, overlay=a.overlay,
                shares=a.shares, on_error=a.on_error, max_pixels=a.max_pixels, device=a.device, workers=a.workers)),
    Command("localise", "sipe.stages.predict",
            "CAM and IS-CAM of your own images for given classes (or the classifier's top-k): OUT/<name>.npz "
            "(make-cams' map format) and OUT/<name>.png heat maps with a colour bar (docs/method.md A.5, D).",
            (PARAMS, MODEL(help="SIPE checkpoint (train-sipe's model.pt or a converted one)"), IMAGES, OUT,
             CLASS_DATA, DEVICE,
             Option("--classes", nargs="+", metavar="CLASS", help="class names or ids (default: the top-k scored)"),
             Option("--top-k", type=int, default=1, metavar="K",
                    help="classes to show when --classes is not given (default: %(default)s)"),
             Option("--scales", type=float, nargs="+", help="inference scales (default: params.yaml cams.scales)"),
             ON_ERROR, MAX_PIXELS),
            lambda stage, a, p: stage.localise_images(
                p, a.model, a.images, a.out, data=a.data, classes=a.classes, top_k=a.top_k, scales=a.scales,
                on_error=a.on_error, max_pixels=a.max_pixels, device=a.device, workers=a.workers)),
    Command("preset", "sipe.presets",
            "Switch the whole configuration to a preset: synthetic (the CPU-sized default), synthetic-large (a larger "
            "synthetic set and budget, about an hour on 2 cores, docs/datasets.md), voc or coco (the paper's settings, "
            "docs/reproducing.md). Rewrites the params file in place, keeping its comments.",
            (PARAMS, Option("name", metavar="NAME",
                            help="synthetic, synthetic-large, voc or coco (the files of sipe/presets/)")),
            _preset),
    Command("dvc-yaml", "sipe.dvc_stages",
            "Write dvc.yaml from the Snakemake workflow for the current params file (./run.sh and `sipe preset` run "
            "it); --check only says whether it is current (exit 1 if not).",
            (Option("--check", action="store_true", help="write nothing; exit 1 if dvc.yaml is not current"),),
            lambda stage, a, p: _dvc_yaml(stage, a.check)),
    Command("sync", "sipe.state",
            "Keep Snakemake's and DVC's records of the outputs in step (docs/architecture.md, \"One state, two tools\"): "
            "before a run, mark current for Snakemake what dvc.lock vouches for; with --after-run, record a finished "
            "Snakemake run in dvc.lock.",
            (Option("--after-run", action="store_true", help="record the finished Snakemake run in dvc.lock"),),
            lambda stage, a, p: stage.sync(a.after_run)),
    Command("compare", "sipe.experiments",
            "DVC experiments side by side in the layout of the paper's tables (Tab. 1-5), then the settings that "
            "differ between them (default: the workspace, the baseline and every successful experiment).",
            (Option("experiments", nargs="*", metavar="EXP", help="experiment names or revs (`dvc exp show`)"),
             Option("--md", action="store_true", help="Markdown tables")),
            lambda stage, a, p: print(stage.compare(a.experiments, markdown=a.md), end="")),
    Command("estimate", "sipe.estimate",
            "Estimate what a run of the params file costs before it starts: per stage the images or steps, hours on "
            "this CPU, on one GPU and on N GPU nodes, peak memory, disk, and whether each rule's runtime and mem_mb "
            "cover it (docs/scaling.md).",
            (PARAMS,
             Option("--gpu-tflops", type=float, default=30.0, metavar="T",
                    help="sustained TFLOP/s assumed for a GPU (default: %(default)s; an assumption, see docs/scaling.md)"),
             Option("--gpu-node-cores", type=int, default=16, metavar="N",
                    help="CPU cores beside each GPU, for the CRF and data stages (default: %(default)s)"),
             Option("--nodes", type=int, default=8, metavar="N", help="GPU nodes of the cluster column (default: %(default)s)"),
             Option("--no-resources", dest="resources", action="store_false",
                    help="skip the check of the rules' runtime and mem_mb (it builds the DAG, about 2 s)")),
            lambda stage, a, p: print(stage.report(p, a.params.parent, gpu_tflops=a.gpu_tflops,
                                                   gpu_node_cores=a.gpu_node_cores, nodes=a.nodes,
                                                   resources=a.resources), end="")),
    Command("check-params", "sipe.config", "Check the params file against the schema.",
            (PARAMS,),
            lambda stage, a, p: print(f"{a.params}: ok (dataset: {p['dataset']})")),
)
COMMANDS: dict[str, Command] = {command.name: command for command in _COMMANDS}


def command_module(name: str) -> str:
    """The dotted name of the module that implements command ``name``, e.g. ``"sipe.stages.refine"`` for ``crf``."""
    if name not in COMMANDS:
        raise KeyError(f"unknown sipe command {name!r}")
    return COMMANDS[name].module


def build_parser() -> argparse.ArgumentParser:
    """The ``sipe`` parser, one subparser per entry of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="sipe", description="sipe-pipeline: one command per stage of the SIPE weakly supervised segmentation "
                                 "pipeline.", epilog="Run `sipe <command> --help` for the options of a stage.")
    parser.add_argument("--version", action="version", version=f"sipe-pipeline {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    for command in COMMANDS.values():
        subparser = sub.add_parser(command.name, help=command.help, description=command.help)
        for option in (*command.options, *COMMON):
            option.add_to(subparser)
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


def _report_error(message: str) -> None:
    """Print ``message`` on stderr and write it to the log file, if any."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(logging.makeLogRecord({"name": "sipe", "msg": message, "levelno": logging.ERROR,
                                                  "levelname": "ERROR"}))
    print(message, file=sys.stderr)


def _os_error_line(exc: OSError) -> str:
    """``<path>: <reason>`` for an :class:`OSError` (missing, unreadable, a folder where a file must be, a
    file where a folder must be, read-only, disk full, ...), from its own path and error text."""
    reason = exc.strerror or type(exc).__name__
    paths = [os.fspath(p) if isinstance(p, os.PathLike) else p for p in (exc.filename, exc.filename2)]
    paths = [str(p) for p in paths if p is not None]
    if isinstance(exc, FileExistsError) and paths and not os.path.isdir(paths[0]):
        reason = "exists and is not a folder"
    if reason and reason[0].isupper() and not reason[:2].isupper():  # "No such file" -> "no such file"
        reason = reason[0].lower() + reason[1:]
    return f"{' -> '.join(paths)}: {reason}" if paths else one_line(exc)


def _user_error_line(exc: BaseException) -> str:
    """One line for an error the user's files or folders caused (not a :class:`SipeError`)."""
    if isinstance(exc, OSError):
        return _os_error_line(exc)
    if isinstance(exc, UnicodeDecodeError):  # the readers of sipe.io name the file; this one did not
        return f"text that is not UTF-8 ({exc.reason} at byte {exc.start})"
    mark = getattr(exc, "problem_mark", None)  # YAML read from a file object knows the file's name
    if mark is not None and not str(mark.name).startswith("<"):
        return f"{mark.name}: not valid YAML (line {mark.line + 1})"
    return one_line(exc)  # JSON or YAML a reader did not attach its file to


def main(argv: list[str] | None = None) -> int:
    """Run one command. Errors the user can cause end with one line ``sipe <command>: error: <path>: <reason>``
    on stderr and exit status 1: a :class:`SipeError`, an :class:`OSError` (a missing or unreadable file,
    a folder where a file must be or the reverse, a read-only folder, a full disk), text that is not
    UTF-8, malformed JSON or YAML. Ctrl-C prints ``sipe <command>: interrupted`` and exits 130. Any other
    exception is a bug and keeps its traceback."""
    import json

    import yaml

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    prefix = f"sipe {args.command}"
    try:
        _setup_logging(args.log)
        COMMANDS[args.command].execute(args)
    except SipeError as exc:
        _report_error(f"{prefix}: error: {exc}")
        return 1
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        _report_error(f"{prefix}: error: {_user_error_line(exc)}")
        return 1
    except KeyboardInterrupt:
        _report_error(f"{prefix}: interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
