"""The declared command line (sipe/cli.py): every command builds, only commands that use settings read
params.yaml, option sets stay what Snakemake rules and dvc.yaml call, errors are one line."""

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from sipe.cli import COMMANDS, build_parser, command_module, main

# Commands that use no setting: they neither take --params nor read params.yaml.
NO_SETTINGS = {"validate-data", "gather-maps", "gather-labels", "eval-labels", "eval-seg", "convert-deeplab-init",
               "convert-checkpoint", "headline-metrics", "dvc-yaml", "sync", "compare"}


def _options(name: str) -> set[str]:
    """The option strings of one subcommand, as the built parser has them (without -h/--help)."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    actions = sub.choices[name]._actions
    return {s for a in actions if not isinstance(a, argparse._HelpAction) for s in a.option_strings}


@pytest.fixture
def bad_params_cwd(tmp_path, monkeypatch):
    """A working directory whose params.yaml is not valid YAML."""
    (tmp_path / "params.yaml").write_text("dataset: [unclosed\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: sipe {name} ") and COMMANDS[name].help.split()[0] in out
    assert "--workers N" in out and "--log FILE" in out
    assert ("--params FILE" in out) == (name not in NO_SETTINGS)


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(f"    {name}" in out for name in COMMANDS)


def test_which_commands_read_params():
    assert {name for name, c in COMMANDS.items() if not c.reads_params} == NO_SETTINGS
    for name in COMMANDS:
        assert ("--params" in _options(name)) == COMMANDS[name].reads_params


@pytest.mark.parametrize("name, expected", [
    ("train-sipe", {"--params", "--data", "--out", "--variant", "--init", "--device", "--workers", "--log"}),
    ("make-cams", {"--params", "--data", "--model", "--out", "--role", "--shard", "--device", "--workers", "--log"}),
    ("crf", {"--params", "--data", "--maps", "--out", "--shard", "--workers", "--log"}),
    ("segment", {"--params", "--data", "--model", "--out", "--split", "--shard", "--device", "--workers", "--log"}),
    ("gather-labels", {"--data", "--labels", "--role", "--workers", "--log"}),
    ("convert-checkpoint", {"--src", "--out", "--workers", "--log"}),
])
def test_option_sets(name, expected):
    assert _options(name) == expected


def test_types_defaults_and_required():
    args = build_parser().parse_args(["make-cams", "--data", "d", "--model", "m.pt", "--out", "o"])
    assert (args.params, args.data, args.model, args.out) == (Path("params.yaml"), Path("d"), Path("m.pt"), Path("o"))
    assert (args.role, args.shard, args.device, args.log) == ("train_aug", "1-of-1", None, None)
    assert args.workers >= 1
    args = build_parser().parse_args(["train-sipe", "--data", "d", "--out", "o", "--workers", "3"])
    assert (args.variant, args.init, args.workers) == ("sipe", None, 3)
    args = build_parser().parse_args(["seg-sheet", "--data", "d", "--split", "train", "--labels", "a", "b",
                                      "--titles", "A", "B", "--out", "s.png"])
    assert args.labels == [Path("a"), Path("b")] and args.titles == ["A", "B"]


@pytest.mark.parametrize("argv", [
    ["make-cams", "--data", "d", "--out", "o"],  # --model is required
    ["seg-sheet", "--data", "d", "--labels", "a", "--titles", "A", "--out", "s.png"],  # --split is required
    ["train-sipe", "--data", "d", "--out", "o", "--variant", "other"],  # not a choice
    ["eval-seg", "--params", "params.yaml", "--data", "d", "--pred", "p", "--out", "o"],  # no settings: no --params
    ["crf", "--data", "d", "--maps", "m", "--out", "o", "--workers", "0"],
])
def test_bad_arguments_are_parser_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_command_without_settings_ignores_broken_params(bad_params_cwd, capsys):
    code = main(["gather-labels", "--data", "nodata", "--labels", "labels"])
    assert code == 1
    assert _one_error_line(capsys) == ("sipe gather-labels: error: nodata: dataset manifest not found "
                                       "(run the prepare-data stage first)")
    code = main(["convert-deeplab-init", "--src", "missing.pth", "--out", "init.pth"])
    assert code == 1
    expected = "sipe convert-deeplab-init: error: missing.pth: DeepLab initialisation file not found"
    assert _one_error_line(capsys) == expected
    assert not (bad_params_cwd / "init.pth").exists()


def test_command_with_settings_reports_the_params_file(bad_params_cwd, capsys):
    code = main(["crf", "--data", "d", "--maps", "m", "--out", "o"])
    assert code == 1
    assert _one_error_line(capsys) == "sipe crf: error: params.yaml: not valid YAML (line 2)"
    (bad_params_cwd / "params.yaml").unlink()
    log = bad_params_cwd / "logs" / "crf.log"
    code = main(["crf", "--data", "d", "--maps", "m", "--out", "o", "--log", str(log)])
    assert code == 1
    assert _one_error_line(capsys) == "sipe crf: error: params.yaml: params file not found"
    assert log.read_text().rstrip().endswith("ERROR sipe: sipe crf: error: params.yaml: params file not found")
    assert not (bad_params_cwd / "o").exists()


def test_imports_are_lazy(tmp_path):
    """`sipe --help` imports no stage; a params error stops before the stage module is imported."""
    probe = ("import sys\nfrom sipe.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith(('sipe.stages', 'sipe.models', 'torch'))))")
    for argv in (["--help"], ["train-sipe", "--data", "d", "--out", "o"]):
        proc = subprocess.run([sys.executable, "-c", probe, *argv], cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_command_module():
    assert command_module("crf") == "sipe.stages.refine"
    assert command_module("train-sipe") == "sipe.stages.train_sipe"
    assert command_module("convert-checkpoint") == "sipe.models.convert"
    for name in COMMANDS:
        assert importlib.util.find_spec(command_module(name)) is not None, name
    with pytest.raises(KeyError, match="no-such-command"):
        command_module("no-such-command")


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_glue_of_a_command_lies_in_the_closure_of_its_module(name):
    """The helpers that cli.py imports for a command are in the import closure of its declared module."""
    sources = pytest.importorskip("sipe.sources")
    closure = set(sources.import_closure(command_module(name)))
    flags = {option.flag for option in COMMANDS[name].options}
    if "--shard" in flags:
        assert "sipe/stages/shards.py" in closure
    if name in {"validate-data", "gather-maps"}:
        assert "sipe/data/manifest.py" in closure
    if name == "gather-maps":
        assert "sipe/stages/shards.py" in closure
    if name.endswith("-table"):
        assert "sipe/stages/tables.py" in closure
