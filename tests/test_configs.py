"""The test configurations (tests/configs/): each is a valid params.yaml once merged, and tiny."""

from __future__ import annotations

import pytest

from sipe.config import validate_params
from tests.tiny import CONFIGS, load_config, merged, repo_params

NAMES = sorted(path.stem for path in CONFIGS.glob("*.yaml"))


@pytest.mark.parametrize("name", NAMES)
def test_configuration_passes_the_schema(name):
    validate_params(merged(repo_params(), load_config(name)), source=f"tests/configs/{name}.yaml")


def test_extends_puts_the_base_underneath():
    crf = load_config("dag-crf")
    assert crf["refine"] == {"method": "crf"} and crf["sipe"] == load_config("dag")["sipe"]
    assert set(NAMES) >= {"dag", "dag-crf", "stages"}


@pytest.mark.parametrize("name", NAMES)
def test_configuration_is_smaller_than_the_default(name):
    params, config = repo_params(), load_config(name)
    assert config["synthetic"]["train_aug"] < params["synthetic"]["train_aug"] / 10
    assert config["sipe"]["crop"] < params["sipe"]["crop"]
