"""dvc.yaml, generated from the Snakemake workflow for the current params.yaml (``sipe dvc-yaml``).

Snakemake's rules are the only description of the DAG. This module builds the DAG Snakemake would run
(every job, forced) and writes one DVC stage per rule and wildcard value: the same command, inputs and
outputs, the params.yaml keys the rule declares with ``settings(...)``, and the outputs it marks with
``metrics(...)`` or ``plot(...)`` (workflow/rules/common.smk). A sharded rule and the gather rule that
checks its shards become one DVC stage that runs the shard commands one after the other and then the
gather command, so that it writes the very files Snakemake writes. Settings that change the DAG's
shape (:data:`SHAPE_KEYS`) are recorded in the file; a DVC stage run with other values stops with one
line (:func:`check_shape`). Design and reasons: docs/architecture.md, "One state, two tools".
"""

from __future__ import annotations

import io
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from sipe.data.manifest import CONTENT_NAME
from sipe.errors import SipeError

DVC_YAML = "dvc.yaml"
DATASET_RULE = "prepare_data"  # the rule whose output folder is the prepared dataset
# params.yaml keys the Snakemake rules read when the DAG is built (which stages exist, which files they
# read): a dvc.yaml generated for other values describes another DAG.
SHAPE_KEYS = ("dataset", "sipe.variants", "sipe.weights", "refine.method", "deeplab.weights", "deeplab.crf",
              "voc.root", "cams.shards", "refine.shards", "deeplab.shards")
HEADER = """\
# Generated from the Snakemake workflow by `sipe dvc-yaml` (./run.sh and `sipe preset` run it): do not edit.
# One stage per Snakemake rule and wildcard value, with the same command, inputs and outputs; a sharded
# rule and its gather rule are one stage running all their commands. `generated_for` holds the settings
# that shape the DAG (docs/architecture.md, "One state, two tools").
"""


@dataclass
class JobRecord:
    """What a Snakemake job contributes to dvc.yaml."""

    rule: str
    wildcards: dict[str, str]
    inputs: list[str]
    outputs: list[str]
    cmd: str
    params: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    plots: dict[str, dict] = field(default_factory=dict)
    desc: str = ""
    order: int = 0  # the rule's place in the workflow: stages are written in this order
    resources: dict = field(default_factory=dict)  # mem_mb, runtime (minutes) and gpu the rule declares


def snakemake_jobs(workdir: Path) -> list[JobRecord]:
    """Every job of the workflow in ``workdir`` for its params.yaml.

    Builds the DAG with everything forced, through Snakemake's API (its DAG object is not public API; this is
    the one place that reads it, against the Snakemake version pinned in the lock files)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import DAGSettings, OutputSettings, ResourceSettings

    workdir = Path(workdir).resolve()
    cwd = Path.cwd()
    try:
        with SnakemakeApi(OutputSettings(quiet={Quietness.ALL}, log_level_override=logging.WARNING)) as api:
            workflow_api = api.workflow(resource_settings=ResourceSettings(cores=1),
                                        snakefile=workdir / "Snakefile", workdir=workdir)
            workflow_api.dag(dag_settings=DAGSettings(forceall=True))  # gives the workflow its DAG settings
            workflow = workflow_api._workflow
            workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True)
            workflow._build_dag()
            order = {rule.name: index for index, rule in enumerate(workflow.rules)}
            return [_record(job, order[job.rule.name]) for job in workflow.dag.jobs if job.rule.name != "all"]
    finally:
        os.chdir(cwd)


def _record(job, order: int) -> JobRecord:
    metrics = [str(f) for f in job.output if f.flags.get("dvc") == "metrics"]
    plots = {str(f): {key: value.format(**job.wildcards_dict) if key == "title" else value
                      for key, value in f.flags["dvc"].items()}
             for f in job.output if isinstance(f.flags.get("dvc"), dict)}
    settings = job.params.get("settings", {})
    return JobRecord(rule=job.rule.name, wildcards=dict(job.wildcards_dict), inputs=[str(f) for f in job.input],
                     outputs=[str(f) for f in job.output], cmd=job.shellcmd, params=list(settings),
                     metrics=metrics, plots=plots, desc=(job.rule.docstring or "").strip(),
                     order=order, resources={name: job.resources.get(name) for name in ("mem_mb", "runtime", "gpu")})


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


@dataclass
class _Group:
    name: str
    jobs: list[JobRecord]
    folder: str | None = None  # sharded stages: the folder their shards and gather write


def _stage_name(job: JobRecord) -> str:
    """``train_sipe-nogsc``: the rule and its wildcard values but the shard (DVC reserves ``@`` for foreach)."""
    return "-".join([job.rule, *(value for key, value in job.wildcards.items() if key != "scatteritem")])


def _groups(jobs: list[JobRecord]) -> list[_Group]:
    """One group per rule and wildcard value, in the workflow's rule order; gather jobs join the group whose
    shard records they read. The order does not depend on how Snakemake happened to sort its DAG."""
    jobs = sorted(jobs, key=lambda job: (job.order, sorted(job.wildcards.items())))
    groups: dict[str, _Group] = {}
    shard_owner: dict[str, _Group] = {}
    for job in (job for job in jobs if "scatteritem" in job.wildcards):
        group = groups.setdefault(_stage_name(job), _Group(_stage_name(job), []))
        group.jobs.append(job)
        (record,) = job.outputs
        group.folder = str(Path(record).parent.parent)  # <folder>/shards/K-of-N.json
        shard_owner[record] = group
    for job in (job for job in jobs if "scatteritem" not in job.wildcards):
        owner = next((shard_owner[path] for path in job.inputs if path in shard_owner), None)
        if owner is None:
            owner = groups.setdefault(_stage_name(job), _Group(_stage_name(job), []))
        owner.jobs.append(job)  # a gather job's work is part of the unsharded stage
    return sorted(groups.values(), key=lambda group: group.jobs[0].order)


def _unique(items) -> list:
    return list(dict.fromkeys(items))


def _command(job: JobRecord, width: int = 100):
    """The job's command as DVC runs it (with the command's default worker count), folded before an option
    where a line would pass ``width`` characters."""
    from ruamel.yaml.scalarstring import FoldedScalarString

    cmd = " ".join(re.sub(r" --workers \d+", "", job.cmd).split())
    if len(cmd) <= width:
        return cmd
    folded, line_start, last = FoldedScalarString(cmd), 0, None
    folded.fold_pos = []
    for match in re.finditer(r" --", cmd):
        if match.start() - line_start > width and last is not None:
            folded.fold_pos.append(last)
            line_start = last + 1
        last = match.start()
    if len(cmd) - line_start > width and last is not None and last > line_start:
        folded.fold_pos.append(last)
    return folded


def dvc_stages(jobs: list[JobRecord]) -> dict[str, dict]:
    """The ``stages`` mapping of dvc.yaml for ``jobs`` (:func:`snakemake_jobs`).

    A stage that reads the prepared dataset depends on its ``content.json`` (a digest of every file, written
    by prepare-data) rather than on the folder: the same changes rerun it, and ``dvc status`` hashes the
    dataset's files once (for the prepare_data stage) instead of once per stage, which at VOC scale is
    the difference between 18 s and 7 s (docs/scaling.md)."""
    groups = _groups(jobs)
    folders = [g.folder for g in groups if g.folder]
    datasets = {out: f"{out}/{CONTENT_NAME}" for job in jobs if job.rule == DATASET_RULE for out in job.outputs}
    stages = {}
    for group in groups:
        main = group.jobs[0]
        own = _unique(out for job in group.jobs for out in job.outputs)
        if group.folder:
            outs = [group.folder]
        else:
            outs = own
        deps = []
        for path in (path for job in group.jobs for path in job.inputs):
            if path in own:
                continue
            deps.append(datasets.get(path) or next((f for f in folders if _inside(path, f)), path))
        desc = main.desc.split("\n")[0] + (" Every shard, then the gather check." if group.folder else "")
        stage = {"desc": desc.strip()} if desc.strip() else {}
        # a sharded stage runs its shards one after the other, then the gather check: Snakemake's very files
        stage["cmd"] = _command(main) if len(group.jobs) == 1 else [_command(job) for job in group.jobs]
        stage["deps"] = _unique(deps)
        params = _unique(key for job in group.jobs for key in job.params)
        if params:
            stage["params"] = params
        special = {path for job in group.jobs for path in [*job.metrics, *job.plots]}
        plain = [path for path in outs if path not in special]
        if plain:
            stage["outs"] = plain
        metrics = _unique(path for job in group.jobs for path in job.metrics)
        if metrics:
            stage["metrics"] = metrics
        plots = [{path: spec} for job in group.jobs for path, spec in job.plots.items()]
        if plots:
            stage["plots"] = plots
        stages[group.name] = stage
    return stages


def shape_of(params: dict) -> dict:
    """The values of :data:`SHAPE_KEYS` in ``params`` (absent keys are left out)."""
    shape = {}
    for key in SHAPE_KEYS:
        value = params
        for part in key.split("."):
            if not isinstance(value, dict) or part not in value:
                break
            value = value[part]
        else:
            shape[key] = value
    return shape


def render(stages: dict, shape: dict) -> str:
    """dvc.yaml's text: the header, ``vars`` with the shape it was generated for, and the stages."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.width = 4096  # commands are folded by _command; nothing else is
    yaml.indent(mapping=2, sequence=4, offset=2)
    buffer = io.StringIO()
    yaml.dump({"vars": [{"generated_for": shape}], "stages": stages}, buffer)
    return HEADER + buffer.getvalue()


def generate(workdir: Path = Path(".")) -> str:
    """The dvc.yaml text for the workflow and params.yaml in ``workdir``."""
    import yaml

    params = yaml.safe_load((Path(workdir) / "params.yaml").read_text())
    return render(dvc_stages(snakemake_jobs(workdir)), shape_of(params))


def write(workdir: Path = Path("."), check: bool = False) -> bool:
    """Write ``workdir``/dvc.yaml if it differs from the generated text; return whether it did (or, with
    ``check``, would). With ``check`` nothing is written."""
    path = Path(workdir) / DVC_YAML
    text = generate(workdir)
    if path.is_file() and path.read_text() == text:
        return False
    if not check:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return True


def check_shape(params: dict, dvc_yaml: Path = Path(DVC_YAML)) -> None:
    """Under DVC (``DVC_STAGE`` set), refuse to run a stage when params.yaml has other values of the
    :data:`SHAPE_KEYS` than dvc.yaml was generated for: that dvc.yaml describes another DAG."""
    if "DVC_STAGE" not in os.environ or not Path(dvc_yaml).is_file():
        return
    import yaml

    recorded = {}
    for entry in (yaml.safe_load(Path(dvc_yaml).read_text()) or {}).get("vars") or []:
        if isinstance(entry, dict):
            recorded.update(entry.get("generated_for") or {})
    changed = [key for key, value in shape_of(params).items() if key in recorded and recorded[key] != value]
    if changed:
        key = changed[0]
        raise SipeError(f"{dvc_yaml} was generated for {key}={recorded[key]!r} but params.yaml says "
                        f"{shape_of(params)[key]!r}: that changes the pipeline's stages; run `sipe dvc-yaml` "
                        "(or ./run.sh -n) and commit dvc.yaml before `dvc exp run`/`dvc repro`")
