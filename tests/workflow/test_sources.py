"""Code dependencies computed from imports (sipe/sources.py): the closures, and what an edit reruns."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sipe.sources import command_sources, import_closure, imported_modules
from tests.conftest import job_counts, run


def test_imports_inside_functions_and_package_inits_count():
    # sipe.stages.refine imports the CRF at the top and the IRN loader inside a function
    closure = import_closure("sipe.stages.refine")
    assert {"sipe/__init__.py", "sipe/stages/__init__.py", "sipe/refine/__init__.py", "sipe/refine/crf.py",
            "sipe/refine/random_walk.py", "sipe/io.py", "sipe/stages/refine.py"} <= set(closure)
    assert "sipe/stages/train_sipe.py" not in closure and "sipe/cli.py" not in closure
    assert list(closure) == sorted(closure)


def test_closure_is_transitive():
    closure = set(import_closure("sipe.stages.refine"))
    for path in closure:
        module = path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        assert set(import_closure(module)) <= closure, f"{module} imports outside the closure of sipe.stages.refine"


def test_relative_and_from_imports_resolve_to_modules():
    assert "sipe.errors" in imported_modules("sipe.io")
    with pytest.raises(ValueError, match="no such module"):
        import_closure("sipe.no_such_module")


@pytest.mark.parametrize("sharded, gather", [("make-cams", "gather-maps"), ("crf", "gather-labels"),
                                             ("ir-labels", "gather-labels"), ("pseudo-labels", "gather-labels"),
                                             ("segment", "gather-labels")])
def test_gather_code_is_part_of_its_sharded_stage(sharded, gather):
    # DVC runs a sharded stage unsharded, as one stage that also stands for the gather rule: its code deps
    # (the sharded command's) must cover what the gather command runs
    assert set(command_sources(gather)) <= set(command_sources(sharded))


def _planned_rules(repo: Path) -> set[str]:
    out = run(["snakemake", "-n", "--quiet", "rules"], cwd=repo)
    return set(job_counts(out.stdout + out.stderr))


@pytest.mark.slow
def test_editing_a_module_of_the_crf_stage_reruns_its_rules_only(snakemake_run: Path):
    module = snakemake_run / "sipe/refine/crf.py"
    original, stat = module.read_text(), module.stat()
    module.write_text(original + "\n# an edit\n")
    try:
        planned = _planned_rules(snakemake_run)
    finally:
        module.write_text(original)
        os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    # the label CRF and every job downstream of its labels; DeepLab's segment runs the same CRF
    assert {"crf", "gather_crf", "ir_labels", "train_irn", "pseudo_labels", "train_deeplab", "segment"} <= planned
    # nothing upstream of the maps, nor the map evaluation, imports the CRF
    assert not planned & {"prepare_data", "dataset_report", "pretrain_backbone", "train_sipe", "make_cams",
                          "gather_cams", "eval_cams", "cam_overlays", "localisation_table"}
    assert "Nothing to be done" in run(["snakemake", "-n"], cwd=snakemake_run).stdout
