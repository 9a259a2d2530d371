"""``sipe estimate``: what a run of the current params.yaml costs, before it starts (docs/scaling.md).

The costs come from the measurements of ``benchmarks/paper_costs.py`` (each network stage at the paper's
VOC settings, on a 2-core CPU) and ``benchmarks/voc_scale.py`` (data preparation of a VOC-sized set), kept in
``benchmarks/results/``. A stage's cost per image or per step is scaled from that reference to the
current settings by the work it does: image pixels, the sum of squared inference scales, batch × crop²,
and the backbone's forward GFLOPs. Times on this CPU are therefore measured for the paper's settings and
scaled for others; every GPU figure is an estimate from an assumed sustained throughput (``--gpu-tflops``)
against the CPU throughput measured by the same benchmark.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from sipe.errors import ConfigError, SipeError, one_line

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
# Forward GFLOPs of a 224×224 image (torchvision's model cards): the backbone's share of the work.
BACKBONE_GFLOPS = {"resnet18": 1.81, "resnet34": 3.66, "resnet50": 4.09, "resnet101": 7.80}
# Parameters in millions (torchvision's model cards): checkpoint sizes scale with them.
BACKBONE_PARAMS = {"resnet18": 11.7, "resnet34": 21.8, "resnet50": 25.6, "resnet101": 44.5}
# Split sizes of the real datasets (docs/datasets.md); test = VOC's segmentation test set.
KNOWN_SPLITS = {"voc": {"train_aug": 10582, "train": 1464, "val": 1449, "test": 1456},
                "coco": {"train_aug": 82081, "train": 82081, "val": 40137, "test": 0}}
# Typical image of each real dataset, pixels: VOC 500×375, COCO 640×480.
KNOWN_PIXELS = {"voc": 500 * 375, "coco": 640 * 480}
# Foreground classes per image (the COCO paper's comparison: VOC 1.4, COCO 3.5; the synthetic default 1.4).
CLASSES_PER_IMAGE = {"synthetic": 1.4, "voc": 1.4, "coco": 3.5}
# Resident memory of a stage process before its work (interpreter, torch, a model): the part that does not scale.
BASE_MB = 1000


@dataclass
class StageCost:
    """One stage of the run: ``units`` images or steps at ``seconds`` each on the reference CPU, in ``jobs``
    parallel jobs (shards or variants); ``peak_mb`` is the measured peak resident memory of one job; ``gpu``:
    whether a GPU runs its work (network stages), else it stays on CPU cores (denseCRF, data)."""

    stage: str
    units: int
    unit: str
    seconds: float
    jobs: int
    peak_mb: float
    gpu: bool

    @property
    def cpu_hours(self) -> float:
        return self.units * self.seconds / 3600


def load_measurements(results: Path = RESULTS) -> tuple[dict, dict]:
    """The two benchmark records (paper_costs.json, voc_scale.json); ConfigError naming a missing file."""
    records = []
    for name in ("paper_costs", "voc_scale"):
        path = results / f"{name}.json"
        if not path.is_file():
            raise ConfigError(f"{path}: not found; run benchmarks/{name}.py to measure it")
        records.append(json.loads(path.read_text()))
    return records[0], records[1]


def split_sizes(params: dict, data: Path | None = None) -> dict:
    """Images per split: the prepared dataset's lists when ``data`` holds one, else the synthetic settings or
    the real dataset's known sizes."""
    if data is not None and (Path(data) / "dataset.json").is_file():
        from sipe.data.manifest import DatasetManifest

        manifest = DatasetManifest.load(data)
        return {"test": 0} | {role: len(manifest.ids(role)) for role in manifest.splits}
    if params["dataset"] == "synthetic":
        syn = params["synthetic"]
        return {"train_aug": syn["train_aug"], "train": syn["train"], "val": syn["val"], "test": 0}
    return KNOWN_SPLITS[params["dataset"]]


def mean_pixels(params: dict) -> float:
    """Mean image size in pixels: from the synthetic settings, else the real dataset's typical image."""
    if params["dataset"] != "synthetic":
        return KNOWN_PIXELS[params["dataset"]]
    syn = params["synthetic"]
    mid = (syn["min_side"] + syn["max_side"]) / 2
    return syn["max_side"] * mid if syn.get("sizes", "uniform") == "voc" else mid * mid


def _squares(scales) -> float:
    return sum(s * s for s in scales)


def stage_costs(params: dict, splits: dict, measured: dict, voc_scale: dict) -> list[StageCost]:
    """Every stage of a run of ``params`` with its cost, scaled from the measured reference by the ratio of the
    work per image or step (module docstring). Peak memory scales the same way above a fixed base."""
    ref = measured["reference"]
    pixels = mean_pixels(params) / ref["pixels"]
    gf = BACKBONE_GFLOPS
    sipe, cams, irn, dl = params["sipe"], params["cams"], params["irn"], params["deeplab"]
    sipe_net = gf[sipe["backbone"]] / gf[ref["sipe_backbone"]]
    dl_net = gf[dl["backbone"]] / gf[ref["deeplab_backbone"]]
    _, data = _largest_data_run(voc_scale)
    # prepare_data: generation (synthetic) or conversion, measured as validation (a real dataset is not here)
    prepare = data["prepare_data" if params["dataset"] == "synthetic" else "validate_data"]

    def cost(name, units, ratio, jobs=1, gpu=True, source=None):
        source = measured[name] if source is None else source
        seconds = source.get("s_per_step", source.get("s_per_image", source.get("ms_per_image", 0) / 1000))
        peak = source["peak_rss_mb"]
        peak = BASE_MB + (peak - BASE_MB) * ratio if peak > BASE_MB else peak
        return StageCost(name, int(units), "step" if name.startswith(("train", "pretrain")) else "image",
                         seconds * ratio, jobs, peak, gpu)

    def sipe_work(batch):
        return sipe_net * batch * sipe["crop"] ** 2 / (ref["sipe_batch"] * ref["sipe_crop"] ** 2)

    scored = splits["val"] + splits.get("test", 0)
    stages = [cost("prepare_data", splits["train_aug"] + scored, pixels, gpu=False, source=prepare),
              cost("dataset_report", splits["train_aug"], 1.0, gpu=False, source=data["dataset_report"])]
    if sipe["weights"] == "pretrain":  # a classification step of the same backbone: costed as a SIPE step
        pre = params["pretrain"]
        stages.append(cost("pretrain_backbone", pre["epochs"] * (splits["train_aug"] // pre["batch_size"]),
                           sipe_work(pre["batch_size"]), source=measured["train_sipe"]))
    variants = sipe["variants"]
    stages.append(cost("train_sipe", len(variants) * sipe["epochs"] * (splits["train_aug"] // sipe["batch_size"]),
                       sipe_work(sipe["batch_size"]), jobs=len(variants)))
    stages.append(cost("make_cams", splits["train_aug"] + (len(variants) - 1) * splits["train"],
                       pixels * sipe_net * _squares(cams["scales"]) / _squares(ref["cams_scales"]), jobs=cams["shards"]))
    shards = params["refine"]["shards"]
    stages.append(cost("crf", splits["train_aug"], pixels, shards, gpu=False))
    stages.append(cost("ir_labels", splits["train_aug"], pixels, shards, gpu=False))
    if params["refine"]["method"] == "irn":
        stages.append(cost("train_irn", irn["epochs"] * (splits["train_aug"] // irn["batch_size"]),
                           sipe_net * irn["batch_size"] * irn["crop"] ** 2 / (ref["irn_batch"] * ref["irn_crop"] ** 2)))
        stages.append(cost("pseudo_labels", splits["train_aug"], pixels, shards))
    stages.append(cost("train_deeplab", dl["iterations"], dl_net * dl["batch_size"] * dl["iter_size"] * dl["crop"] ** 2
                       / (ref["deeplab_batch"] * ref["deeplab_iter_size"] * ref["deeplab_crop"] ** 2)))
    stages.append(cost("segment", scored, pixels * dl_net * (2 if dl["flip"] else 1) * _squares(dl["scales"])
                       / _squares(ref["deeplab_scales"]), jobs=dl["shards"]))
    return stages


def wall_hours(stage: StageCost, speedup: float, nodes: int) -> float:
    """Hours of ``stage`` when its work runs ``speedup`` times faster than on the reference CPU, on up to
    ``nodes`` machines at once (one per shard or variant)."""
    return stage.cpu_hours / speedup / max(1, min(nodes, stage.jobs))


def estimate_table(stages: list[StageCost], measured: dict, gpu_tflops: float, gpu_node_cores: int,
                   nodes: int):
    """The estimate as a pandas DataFrame: per stage, the units, the cost per unit on the reference CPU, the
    hours on this CPU, on one GPU (estimate) and on ``nodes`` GPU nodes (estimate), and the peak memory of one
    job; a total row (sums; the largest peak)."""
    import pandas as pd

    cpu_gflops = measured["reference"]["cpu_gflops"]
    gpu_speedup = gpu_tflops * 1000 / cpu_gflops
    core_speedup = gpu_node_cores / measured["cpus"]
    rows = []
    for stage in stages:
        speedup = gpu_speedup if stage.gpu else core_speedup
        rows.append({"stage": stage.stage, "units": f"{stage.units:,} {stage.unit}s",
                     "s per unit (CPU)": round(stage.seconds, 3),
                     "this CPU": stage.cpu_hours, "1 GPU (est.)": wall_hours(stage, speedup, 1),
                     f"{nodes} GPU nodes (est.)": wall_hours(stage, speedup, nodes),
                     "peak MB (job)": round(stage.peak_mb)})
    table = pd.DataFrame(rows)
    total = {"stage": "total", "units": "", "s per unit (CPU)": math.nan, "peak MB (job)": table["peak MB (job)"].max()}
    for column in ("this CPU", "1 GPU (est.)", f"{nodes} GPU nodes (est.)"):
        total[column] = table[column].sum()
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)



def _largest_data_run(voc_scale: dict) -> tuple[int, dict]:
    """The data-phase record of voc_scale.json with the most images, and that count."""
    images = max(int(key.split("_")[0]) for key in voc_scale["data"])
    return images, voc_scale["data"][f"{images}_images"]


def disk_mb(params: dict, splits: dict, stages: list[StageCost], measured: dict, voc_scale: dict) -> dict:
    """Disk a run writes, MB: the prepared dataset and the label folders (sizes per image of the VOC-sized set,
    scaled by pixels), the maps (an upper bound: float16 CAM and IS-CAM uncompressed, for the mean number of
    classes per image) and the checkpoints (measured, scaled by parameter count)."""
    data_images, data = _largest_data_run(voc_scale)
    pixels = mean_pixels(params)
    scale = pixels / measured["reference"]["pixels"]
    units = {stage.stage: stage.units for stage in stages}
    scored = splits["val"] + splits.get("test", 0)
    label_folders = 2 + (params["refine"]["method"] == "irn")  # crf, ir_labels (+ pseudo_labels) of train_aug
    channels = 2 * CLASSES_PER_IMAGE.get(params["dataset"], CLASSES_PER_IMAGE["voc"]) + 1  # CAM: K, IS-CAM: K + 1
    ref, params_m = measured["reference"], BACKBONE_PARAMS
    sipe_net = params_m[params["sipe"]["backbone"]] / params_m[ref["sipe_backbone"]]
    deeplab_net = params_m[params["deeplab"]["backbone"]] / params_m[ref["deeplab_backbone"]]
    checkpoints = measured["checkpoint_mb"]
    return {
        "dataset": data["data_folder_mb"] / data_images * scale * (splits["train_aug"] + scored),
        "maps (upper bound)": 2 * pixels * channels * units["make_cams"] / 2**20,
        "labels": data["mask_kb"] * scale * (label_folders * splits["train_aug"] + 2 * scored) / 1024,
        "checkpoints": checkpoints["sipe"] * sipe_net * len(params["sipe"]["variants"])
        + checkpoints["irn"] * sipe_net * (params["refine"]["method"] == "irn") + checkpoints["deeplab"] * deeplab_net,
    }


def resource_check(workdir: Path, stages: list[StageCost], gpu_speedup: float) -> list[str]:
    """Each rule's declared ``runtime`` (minutes) and ``mem_mb`` against the estimate of one of its jobs: one line
    per rule, ``ok`` or ``SHORT``. A job with a GPU is held to the GPU estimate, the others to the CPU time;
    memory is held to the peak measured on the CPU, an upper bound of a GPU job's host memory."""
    from sipe.dvc_stages import snakemake_jobs

    jobs: dict[str, list] = {}
    for job in snakemake_jobs(workdir):
        jobs.setdefault(job.rule, []).append(job)
    lines = []
    for stage in stages:
        if stage.stage not in jobs:
            continue
        rule_jobs = jobs[stage.stage]
        resources = rule_jobs[0].resources
        gpu = int(resources.get("gpu") or 0) > 0
        minutes = stage.cpu_hours * 60 / (gpu_speedup if gpu and stage.gpu else 1) / len(rule_jobs)
        runtime, mem = resources.get("runtime"), resources.get("mem_mb")
        verdict = "ok" if minutes <= runtime and stage.peak_mb <= mem else "SHORT"
        lines.append(f"{stage.stage:18s} {len(rule_jobs):3d} job(s) on {'GPU' if gpu else 'CPU'}: "
                     f"{minutes:9.1f} min of {runtime} min, {stage.peak_mb:6.0f} MB of {mem} MB  {verdict}")
    return lines


def duration(hours: float) -> str:
    """``hours`` as people read it: seconds, minutes, hours or days."""
    if hours != hours:  # NaN: no value
        return ""
    seconds = hours * 3600
    for limit, divisor, unit in ((60, 1, "s"), (3600, 60, "min"), (48 * 3600, 3600, "h")):
        if seconds < limit:
            return f"{seconds / divisor:.1f} {unit}"
    return f"{hours / 24:.1f} d"


def report(params: dict, workdir: Path, gpu_tflops: float = 30.0, gpu_node_cores: int = 16, nodes: int = 8,
           resources: bool = True) -> str:
    """The text ``sipe estimate`` prints: the stage table, disk use and (``resources``) the rules' check."""
    measured, voc_scale = load_measurements()
    splits = split_sizes(params, Path(workdir) / "data" / params["dataset"])
    stages = stage_costs(params, splits, measured, voc_scale)
    table = estimate_table(stages, measured, gpu_tflops, gpu_node_cores, nodes)
    gpu_speedup = gpu_tflops * 1000 / measured["reference"]["cpu_gflops"]
    disk = disk_mb(params, splits, stages, measured, voc_scale)
    lines = [
        f"Estimate for dataset {params['dataset']} ({', '.join(f'{k} {v:,}' for k, v in splits.items() if v)} images; "
        f"mean image {mean_pixels(params):,.0f} px)",
        f"CPU: measured on {measured['cpus']} cores at the paper's VOC settings (benchmarks/paper_costs.py), scaled "
        "to these settings. GPU columns are estimates, not measurements: network stages at "
        f"{gpu_tflops:g} TFLOP/s sustained against this CPU's measured {measured['reference']['cpu_gflops']:g} "
        f"GFLOP/s (x{gpu_speedup:.0f}); CRF and data stages on {gpu_node_cores} CPU cores per GPU node.",
        "",
        table.to_string(index=False, na_rep="", float_format=lambda v: f"{v:,.3g}",
                        formatters={column: duration for column in table.columns[3:6]}),
        "",
        "Disk (MB): " + ", ".join(f"{name} {value:,.0f}" for name, value in disk.items())
        + f"; total {sum(disk.values()) / 1024:,.1f} GB (DVC's cache holds a second copy unless it links)",
    ]
    if resources and (Path(workdir) / "Snakefile").is_file():
        from snakemake.exceptions import WorkflowError

        try:
            checks = resource_check(Path(workdir), stages, gpu_speedup)
        except (WorkflowError, SipeError) as exc:  # e.g. the raw dataset is not in place yet
            checks = [f"not checked: the DAG cannot be built yet ({one_line(exc, limit=300)})"]
        lines += ["", "Rule resources (workflow/rules/*.smk) against one job's estimate:", *checks]
    return "\n".join(lines) + "\n"
