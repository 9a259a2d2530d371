"""The SLURM profile (workflow/profiles/slurm) and the resources the rules declare, without a cluster."""

from __future__ import annotations

import re

import yaml

from tests.conftest import REPO, run

PROFILE = REPO / "workflow/profiles/slurm/config.yaml"
FORBIDDEN_IN_EXTRA = re.compile(r"--(gres|gpus|mem|time|partition)\b|(^|\s)-[pt]\s")


def _rule_blocks() -> list[tuple[str, str]]:
    """(name, text) of each rule definition in workflow/rules/*.smk; rules made in a loop (``rule:`` with
    ``name:``) are named by their ``name:`` expression."""
    blocks = []
    for smk in sorted((REPO / "workflow/rules").glob("*.smk")):
        parts = re.split(r"^\s*rule(?: (\w+))?:\n", smk.read_text(), flags=re.MULTILINE)
        for name, text in zip(parts[1::2], parts[2::2]):
            blocks.append((name or re.search(r"name:\s*(.+)", text)[1].strip(), text))
    return blocks


def test_every_profile_entry_is_commented_and_no_gpu_or_limits_hide_in_slurm_extra():
    for number, line in enumerate(PROFILE.read_text().splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            assert "#" in line, f"{PROFILE.name}:{number}: entry without a comment: {line.strip()}"
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile["executor"] == "slurm"
    assert {"slurm_partition", "slurm_account"} <= set(profile["default-resources"])
    extras = [str(r.get("slurm_extra", "")) for r in [profile["default-resources"], *profile["set-resources"].values()]]
    extras += re.findall(r"slurm_extra\s*=\s*(.+)", "".join(text for _, text in _rule_blocks()))
    assert not [e for e in extras if FORBIDDEN_IN_EXTRA.search(e)]


def test_every_rule_declares_memory_and_runtime_and_gpu_rules_get_a_gpu_partition():
    rules = {line.split()[0] for line in run(["snakemake", "--list-rules"], cwd=REPO).stdout.splitlines() if line.strip()}
    profile = yaml.safe_load(PROFILE.read_text())
    assert set(profile["set-resources"]) <= rules, "the profile names rules that do not exist"
    for name, block in _rule_blocks():
        assert "slurm_partition" not in block and "slurm_account" not in block, f"rule {name}: cluster names belong in the profile"
        resources = block.split("resources:", 1)[1] if "resources:" in block else ""
        assert "mem_mb=" in resources and "runtime=" in resources, f"rule {name} declares no mem_mb/runtime"
        if "gpu=" in resources:
            assert "slurm_partition" in profile["set-resources"].get(name, {}), f"GPU rule {name} has no GPU partition"


def test_the_profile_is_valid_and_several_gpus_start_torchrun():
    proc = run(["snakemake", "--dry-run", "--forceall", "--printshellcmds", "--workflow-profile", "workflow/profiles/slurm",
                "--set-resources", "train_sipe:gpu=2", "--", "results/synthetic/sipe/model.pt"], cwd=REPO)
    out = proc.stdout + proc.stderr
    assert re.search(r"python -m torch\.distributed\.run --standalone --nproc_per_node=2 -m sipe -- train-sipe ", out)
    assert "python -m sipe pretrain-backbone " in out  # one GPU or none: a plain process
