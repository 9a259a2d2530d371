"""`sipe estimate` (sipe/estimate.py): unit counts from the settings, costs scaled from the measured reference."""

from __future__ import annotations

import pytest

from sipe.estimate import load_measurements, mean_pixels, split_sizes, stage_costs
from sipe.presets import preset_values
from tests.conftest import copy_repo, run
from tests.data.fixtures import make_sbd_tree, make_voc_tree
from tests.tiny import merged, repo_params

MEASURED, VOC_SCALE = load_measurements()


def preset(name: str, **overrides) -> dict:
    """params.yaml after `sipe preset NAME`, then ``overrides`` (nested dicts)."""
    params = repo_params()
    for key, value in preset_values(name).items():
        section, _, leaf = key.rpartition(".")
        node = params
        for part in filter(None, section.split(".")):
            node = node[part]
        node[leaf] = value
    return merged(params, overrides)


def costs(params: dict) -> dict:
    return {stage.stage: stage for stage in stage_costs(params, split_sizes(params), MEASURED, VOC_SCALE)}


def test_voc_units_follow_the_papers_schedules():
    stages = costs(preset("voc"))
    assert stages["train_sipe"].units == 2 * 5 * (10582 // 16)  # two variants, 5 epochs of batch 16
    assert stages["train_irn"].units == 3 * (10582 // 32)
    assert stages["train_deeplab"].units == 20000
    assert stages["make_cams"].units == 10582 + 1464  # sipe on train_aug, nogsc on train
    assert stages["segment"].units == 1449 + 1456  # val and test
    assert stages["crf"].jobs == 8 and stages["train_sipe"].jobs == 2


def test_coco_has_no_irn_stages_and_one_variant():
    stages = costs(preset("coco"))
    assert "train_irn" not in stages and "pseudo_labels" not in stages
    assert stages["make_cams"].units == 82081 and stages["segment"].units == 40137


def test_costs_scale_with_the_work():
    voc = preset("voc")
    base = costs(voc)
    doubled = costs(merged(voc, {"sipe": {"batch_size": 32}, "deeplab": {"iter_size": 4}}))
    assert doubled["train_sipe"].seconds == pytest.approx(2 * base["train_sipe"].seconds)
    assert doubled["train_deeplab"].seconds == pytest.approx(2 * base["train_deeplab"].seconds)
    assert doubled["train_sipe"].units == 2 * 5 * (10582 // 32)
    fewer_scales = costs(merged(voc, {"cams": {"scales": [1.0]}}))
    assert fewer_scales["make_cams"].seconds == pytest.approx(base["make_cams"].seconds / 7.5)
    small = costs(merged(voc, {"sipe": {"backbone": "resnet18"}}))
    assert small["make_cams"].seconds == pytest.approx(base["make_cams"].seconds * 1.81 / 4.09)


def test_the_measured_reference_is_returned_unscaled():
    """At the settings and image size of the measurement, every cost is the measured one."""
    ref = MEASURED["reference"]
    voc = preset("voc", dataset="synthetic")
    side = ref["pixels"] ** 0.5
    voc["synthetic"].update(min_side=round(side), max_side=round(side), sizes="uniform")
    assert mean_pixels(voc) == pytest.approx(ref["pixels"], rel=5e-3)
    stages = costs(voc)
    for name in ("make_cams", "crf", "ir_labels", "pseudo_labels", "segment"):
        assert stages[name].seconds == pytest.approx(MEASURED[name]["s_per_image"], rel=5e-3)
    for name in ("train_sipe", "train_irn", "train_deeplab"):
        assert stages[name].seconds == pytest.approx(MEASURED[name]["s_per_step"])


def test_estimate_prints_the_table_and_checks_the_rules_resources(tmp_path, monkeypatch):
    """On the VOC preset (fixture raw trees, placeholder weights files: the DAG needs them to exist), every
    rule's runtime and mem_mb is checked against the estimate of one of its jobs."""
    repo = copy_repo(tmp_path / "repo")
    run(["python", "-m", "sipe", "preset", "voc"], cwd=repo)
    make_voc_tree(tmp_path / "VOC2012")
    make_sbd_tree(tmp_path / "sbd")
    torch_home = tmp_path / "torch"
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    from sipe.models.backbone import imagenet_weights_file

    for path in (imagenet_weights_file("resnet50"), repo / "data/raw/deeplab/deeplabv1_resnet101-coco_torchvision.pth"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"placeholder")
    params = (repo / "params.yaml").read_text()
    params = params.replace("data/raw/VOCdevkit/VOC2012", str(tmp_path / "VOC2012"))
    (repo / "params.yaml").write_text(params.replace("data/raw/benchmark_RELEASE/dataset", str(tmp_path / "sbd")))
    out = run(["python", "-m", "sipe", "estimate", "--nodes", "4"], cwd=repo).stdout
    assert "train_aug 10,582" in out and "4 GPU nodes (est.)" in out
    lines = {line.split()[0]: line for line in out.splitlines()[out.splitlines().index(
        "Rule resources (workflow/rules/*.smk) against one job's estimate:") + 1:]}
    assert {"train_sipe", "make_cams", "crf", "train_irn", "pseudo_labels", "train_deeplab", "segment"} <= set(lines)
    assert "2 job(s) on GPU" in lines["train_sipe"] and "8 job(s) on CPU" in lines["crf"]
    assert all(line.endswith(" ok") for line in lines.values()), out


def test_synthetic_large_is_estimated_within_its_90_minutes():
    minutes = 60 * sum(stage.cpu_hours for stage in costs(preset("synthetic-large")).values())
    default = 60 * sum(stage.cpu_hours for stage in costs(preset("synthetic")).values())
    assert 4 * default < minutes <= 90


def test_estimate_before_the_raw_data_is_in_place(tmp_path):
    """`sipe preset voc && sipe estimate` on a machine without VOC: the table, and one line for the rules' check."""
    repo = copy_repo(tmp_path / "repo")
    run(["python", "-m", "sipe", "preset", "voc"], cwd=repo)
    out = run(["python", "-m", "sipe", "estimate"], cwd=repo).stdout
    assert "train_sipe   6,610 steps" in out and "Traceback" not in out
    assert out.rstrip().splitlines()[-1].startswith(
        "not checked: the DAG cannot be built yet (sipe prepare-data: error: data/raw/VOCdevkit/VOC2012: VOC 2012 root")
