"""The test configurations in tests/configs/: params.yaml overrides, one YAML file per configuration.

``dag.yaml`` (and ``dag-crf.yaml``, which extends it) sizes whole-DAG runs; ``stages.yaml`` sizes the
tests that call a stage's functions directly. A file's sections are merged key by key into the
matching sections of the repository's params.yaml.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "tests" / "configs"


def load_config(name: str) -> dict:
    """The sections of ``tests/configs/<name>.yaml``, with those of the file it ``extends`` underneath."""
    config = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    base = config.pop("extends", None)
    return merged(load_config(Path(base).stem), config) if base else config


def merged(params: dict, config: dict) -> dict:
    """A copy of ``params`` with each section of ``config`` merged in (a dict section key by key)."""
    out = copy.deepcopy(params)
    for section, values in config.items():
        if isinstance(values, dict) and isinstance(out.get(section), dict):
            out[section].update(values)
        else:
            out[section] = values
    return out


def repo_params() -> dict:
    """The repository's params.yaml."""
    return yaml.safe_load((REPO / "params.yaml").read_text())


STAGES = load_config("stages")
TINY_DATA = STAGES["synthetic"]  # the settings of the tiny dataset itself, not merged into params.yaml


def tiny_params(**sipe) -> dict:
    """params.yaml with the tiny SIPE training settings of stages.yaml (``sipe`` overrides some of them)."""
    return merged(repo_params(), {"sipe": {**STAGES["sipe"], **sipe}})


def tiny_deeplab_params(**deeplab) -> dict:
    """params.yaml with the tiny DeepLab settings of stages.yaml (``deeplab`` overrides some of them)."""
    return merged(repo_params(), {"deeplab": {**STAGES["deeplab"], **deeplab}})
