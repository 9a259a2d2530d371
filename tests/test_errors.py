"""Every error the user can cause is one line ``sipe <command>: error: <path>: <reason>`` and exit status 1
(docs/architecture.md, "Reliability rules"): files and folders that are missing, unreadable, of the wrong
kind or not writable, a full disk, text that is not UTF-8, malformed JSON and YAML, YAML with a duplicate
key, a dataset.json or cls_labels.json of the wrong structure; Ctrl-C is one line and exit status 130.
Each test runs the real command line on real files."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from sipe.cli import COMMANDS, main
from sipe.io import atomic_path
from tests.data.test_validate import make_dataset
from tests.tiny import REPO

ROOT = os.geteuid() == 0  # root reads and writes whatever the permission bits say


def _params_text() -> str:
    return (REPO / "params.yaml").read_text()


def _screen_lines(text: str) -> list[str]:
    """The lines ``text`` leaves on a terminal: a progress bar (tqdm, ``leave=False``) redraws its line
    after ``\\r`` and blanks it at the end, so only what follows the last ``\\r`` of a line stays."""
    lines = [line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")]
    return [line for line in lines if line]


def _run(capsys, argv: list[str]) -> str:
    """Run ``sipe argv``; assert exit status 1 and exactly one line on stderr; return that line."""
    code = main([str(a) for a in argv])
    err = _screen_lines(capsys.readouterr().err)
    assert code == 1, err
    assert len(err) == 1, err
    assert err[0].startswith(f"sipe {argv[0]}: error: ")
    return err[0]


@pytest.fixture
def dataset(tmp_path):
    """A small prepared dataset (tests/data/test_validate.py): train_aug, train, val with masks, test without."""
    return make_dataset(tmp_path / "tiny")


def _labels_dir(manifest) -> Path:
    return manifest.root / "SegmentationClassAug"


# --- the settings file (--params) ----------------------------------------------------------------

def test_params_is_a_folder(tmp_path, capsys):
    folder = tmp_path / "params.yaml"
    folder.mkdir()
    assert _run(capsys, ["check-params", "--params", folder]) == f"sipe check-params: error: {folder}: is a directory"


def test_params_below_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    path = tmp_path / "file" / "params.yaml"
    assert _run(capsys, ["check-params", "--params", path]) == f"sipe check-params: error: {path}: not a directory"


@pytest.mark.skipif(ROOT, reason="root reads a file whatever its mode")
def test_params_unreadable(tmp_path, capsys):
    path = tmp_path / "params.yaml"
    path.write_text(_params_text())
    path.chmod(0)
    assert _run(capsys, ["check-params", "--params", path]) == f"sipe check-params: error: {path}: permission denied"


def test_params_not_utf8(tmp_path, capsys):
    path = tmp_path / "params.yaml"
    path.write_bytes(_params_text().encode() + b"# caf\xe9\n")
    line = _run(capsys, ["check-params", "--params", path])
    assert line.startswith(f"sipe check-params: error: {path}: params file is not UTF-8 text (byte 0xe9 on line ")


@pytest.mark.parametrize("text, key, line", [
    ("dataset: voc\n", "dataset", 1),  # a second top-level dataset: (PyYAML would keep the last one)
    ("sipe:\n  lr: 0.1\n  lr: 0.01\n", "lr", 3),  # a nested duplicate
])
def test_params_duplicate_key(tmp_path, capsys, text, key, line):
    path = tmp_path / "params.yaml"
    if text.startswith("dataset"):
        path.write_text(text + _params_text())
        where = _params_text().splitlines().index("dataset: synthetic") + 2
    else:
        path.write_text(text)
        where = line
    assert _run(capsys, ["check-params", "--params", path]) == (
        f"sipe check-params: error: {path}: duplicate key '{key}' (line {where})")


def test_params_duplicate_key_also_refused_by_a_stage(tmp_path, capsys, dataset):
    """Every command that reads settings reads them the same way (here before any output is made)."""
    path = tmp_path / "params.yaml"
    path.write_text(_params_text() + "dataset_report:\n  samples: 4\n")
    out = tmp_path / "report"
    line = _run(capsys, ["dataset-report", "--params", path, "--data", dataset.root, "--out", out])
    assert line.startswith(f"sipe dataset-report: error: {path}: duplicate key 'dataset_report' (line ")
    assert not out.exists()


def test_safe_loader_still_reads_merge_keys(tmp_path):
    from sipe.io import read_yaml

    path = tmp_path / "x.yaml"
    path.write_text("base: &b {x: 1, y: 2}\nz:\n  <<: *b\n  x: 5\n")
    assert read_yaml(path)["z"] == {"x": 5, "y": 2}


# --- --out and --log: a file where a folder must be, a folder where a file must be, read-only, full disk --

def test_out_folder_is_an_existing_file(tmp_path, capsys, dataset):
    out = tmp_path / "scores"
    out.write_text("not a folder")
    line = _run(capsys, ["eval-labels", "--data", dataset.root, "--labels", _labels_dir(dataset), "--out", out])
    assert line == f"sipe eval-labels: error: {out}: exists and is not a folder"
    assert out.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores", "tiny"]


def test_output_file_is_an_existing_folder(capsys, dataset):
    index = _labels_dir(dataset) / "index.json"
    index.mkdir()
    line = _run(capsys, ["gather-labels", "--data", dataset.root, "--labels", _labels_dir(dataset)])
    assert line == f"sipe gather-labels: error: {index}: is a directory"
    assert not [p for p in _labels_dir(dataset).iterdir() if p.name.endswith(".tmp")]


@pytest.mark.skipif(ROOT, reason="root writes into a folder whatever its mode")
def test_out_folder_read_only(capsys, dataset):
    labels = _labels_dir(dataset)
    labels.chmod(0o555)
    try:
        line = _run(capsys, ["gather-labels", "--data", dataset.root, "--labels", labels])
    finally:
        labels.chmod(0o755)
    assert line == f"sipe gather-labels: error: {labels}: permission denied"
    assert not (labels / "index.json").exists()


def _unwritable_folder() -> Path:
    """A folder nobody may create files in, root included (sysfs); skip where there is none."""
    parent = Path("/sys/kernel")
    try:
        fd, name = tempfile.mkstemp(dir=parent)
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            pytest.skip(f"{parent}: {exc}")
        return parent
    os.close(fd)  # pragma: no cover - a writable sysfs: nothing to test here
    os.unlink(name)
    pytest.skip(f"{parent} is writable here")


def test_out_folder_not_writable_even_for_root(capsys, dataset):
    """--out inside a folder nobody may write: the same line as for a read-only folder."""
    out = _unwritable_folder() / "sipe-test-scores"
    line = _run(capsys, ["eval-labels", "--data", dataset.root, "--labels", _labels_dir(dataset), "--out", out])
    assert line.startswith(f"sipe eval-labels: error: {out}: ")
    assert line.endswith(("permission denied", "operation not permitted", "read-only file system"))


def test_atomic_path_names_the_folder_it_cannot_write():
    """Not the random name of the temporary file that could not be made."""
    folder = _unwritable_folder()
    with pytest.raises(OSError) as info, atomic_path(folder / "index.json"):
        pass
    assert info.value.filename == str(folder) and info.value.filename2 is None


def test_disk_full(capsys, dataset, monkeypatch):
    """The output's temporary file is written to /dev/full (a real ENOSPC): the line names the output,
    which is not created, and no temporary file is left."""
    write_text = pathlib.Path.write_text

    def to_full_disk(self, data, *args, **kwargs):
        if not self.name.endswith(".tmp"):
            return write_text(self, data, *args, **kwargs)
        with open("/dev/full", "w") as handle:  # ENOSPC when the buffer is flushed
            handle.write(data)

    monkeypatch.setattr(pathlib.Path, "write_text", to_full_disk)
    labels = _labels_dir(dataset)
    line = _run(capsys, ["gather-labels", "--data", dataset.root, "--labels", labels])
    assert line == f"sipe gather-labels: error: {labels / 'index.json'}: no space left on device"
    assert not (labels / "index.json").exists()
    assert not [p for p in labels.iterdir() if p.name.endswith(".tmp")]


def test_atomic_path_names_the_output_of_a_failed_write(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(OSError) as info, atomic_path(target) as tmp, open("/dev/full", "w") as handle:
        assert tmp.parent == tmp_path
        handle.write("x")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


def test_log_file_below_a_file(tmp_path, capsys):
    (tmp_path / "logs").write_text("a file")
    params = tmp_path / "params.yaml"
    params.write_text(_params_text())
    line = _run(capsys, ["check-params", "--params", params, "--log", tmp_path / "logs" / "check.log"])
    assert line == f"sipe check-params: error: {tmp_path / 'logs'}: exists and is not a folder"


def test_log_file_is_a_folder(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(_params_text())
    line = _run(capsys, ["check-params", "--params", params, "--log", tmp_path])
    assert line == f"sipe check-params: error: {tmp_path}: is a directory"


# --- dataset files: id lists, dataset.json, cls_labels.json ---------------------------------------

def test_id_list_not_utf8(capsys, dataset):
    id_list = dataset.split("train_aug").list_file
    id_list.write_bytes(b"img_a\nimg_\xff\n")
    line = _run(capsys, ["gather-labels", "--data", dataset.root, "--labels", _labels_dir(dataset)])
    assert line == f"sipe gather-labels: error: {id_list}: id list is not UTF-8 text (byte 0xff on line 2)"


def test_dataset_json_not_utf8(capsys, dataset):
    path = dataset.root / "dataset.json"
    path.write_bytes(path.read_bytes().replace(b'"tiny"', b'"tiny\xc0"'))
    line = _run(capsys, ["validate-data", "--data", dataset.root])
    assert line.startswith(f"sipe validate-data: error: {path}: dataset manifest is not UTF-8 text (byte 0xc0 on line ")


def test_dataset_json_malformed(capsys, dataset):
    path = dataset.root / "dataset.json"
    path.write_text('{"name": "tiny",\n "classes": [}\n')
    line = _run(capsys, ["validate-data", "--data", dataset.root])
    assert line == (f"sipe validate-data: error: {path}: dataset manifest is not valid JSON (line 2, column 14: "
                    f"Expecting value)")


CLASSES_MUST = "must be a list of at least two class names (background first), each a non-empty string"


@pytest.mark.parametrize("edit, message", [
    (lambda m: [1, 2], "must be a JSON object (a dataset manifest), got array"),
    (lambda m: m.pop("classes") and None, "missing key classes"),
    (lambda m: m.update(name=7), "name: must be a non-empty string, got 7"),
    (lambda m: m.update(classes="background,cat"), f'classes: {CLASSES_MUST}, got "background,cat"'),
    (lambda m: m.update(classes=["background", 1]), f"classes: {CLASSES_MUST}, got array"),
    (lambda m: m.update(labels=None),
     "labels: must be the path of the class labels file (a non-empty string), got null"),
    (lambda m: m.update(splits=[]), "splits: must be an object mapping split names to splits, got array"),
    (lambda m: m["splits"].update(val="lists/val.txt"),
     "splits.val: must be an object with list, images and masks, got string"),
    (lambda m: m["splits"]["val"].pop("images") and None, "missing key splits.val.images"),
    (lambda m: m["splits"]["val"].update(masks=5), "splits.val.masks: must be the path of the mask folder or null, got 5"),
    (lambda m: m["splits"]["train"].update(list=["a.txt"]),
     "splits.train.list: must be the path of the id list (a non-empty string), got array"),
    (lambda m: m.update(image_ext="jpg"), 'image_ext: must be a file extension such as ".jpg", got "jpg"'),
    (lambda m: m.update(mask_ext=1), 'mask_ext: must be a file extension such as ".png", got 1'),
])
def test_dataset_json_structure(capsys, dataset, edit, message):
    path = dataset.root / "dataset.json"
    manifest = json.loads(path.read_text())
    replaced = edit(manifest)
    path.write_text(json.dumps(replaced if isinstance(replaced, list) else manifest))
    assert _run(capsys, ["validate-data", "--data", dataset.root]) == f"sipe validate-data: error: {path}: {message}"


@pytest.mark.parametrize("text, message", [
    ('["img_a"]', "must be a JSON object mapping image ids to class index lists, got array"),
    ('{"img_a": [1], "img_b": [true], "img_c": [2]}', "img_b: labels must be lists of class indices 1..2, got [true]"),
    ('{"img_a": [1], "img_b": "2", "img_c": [2]}', "img_b: labels must be lists of class indices 1..2, got \"2\""),
    ('{"img_a": [1], "img_b": [3], "img_c": [0], "img_d": [1]}',
     "img_b: labels must be lists of class indices 1..2, got [3] (and 1 more bad entries)"),
    ('{"img_a": [1.0], "img_b": [2], "img_c": [2]}', "img_a: labels must be lists of class indices 1..2, got [1.0]"),
    ('{"img_a": [1], "img_b": [NaN]}', "NaN is not a finite number (class labels file)"),
    ('{"img_a": [1], "img_b": [2],\n"img_c": [2],}',
     "class labels file is not valid JSON (line 2, column 14: Expecting property name enclosed in double quotes)"),
])
def test_cls_labels_structure(capsys, dataset, text, message):
    path = dataset.labels_file
    path.write_text(text)
    assert _run(capsys, ["validate-data", "--data", dataset.root]) == f"sipe validate-data: error: {path}: {message}"


def test_cls_labels_not_utf8(capsys, dataset):
    path = dataset.labels_file
    path.write_bytes(b'{"img_a": [1], "caf\xe9": [2]}')
    line = _run(capsys, ["validate-data", "--data", dataset.root])
    assert line == f"sipe validate-data: error: {path}: class labels file is not UTF-8 text (byte 0xe9 on line 1)"


# --- Ctrl-C and programming errors ---------------------------------------------------------------

def test_ctrl_c_is_one_line_and_exit_130(tmp_path):
    """``sipe check-params`` waits on a FIFO as its params file; SIGINT while it reads."""
    fifo = tmp_path / "params.yaml"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    # as from a terminal: SIGINT at its default, even when the test run itself ignores it (an ignored SIGINT is
    # inherited, and Python then installs no KeyboardInterrupt handler)
    proc = subprocess.Popen([sys.executable, "-m", "sipe", "check-params", "--params", str(fifo)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    writer = None
    try:
        deadline = time.monotonic() + 60
        while writer is None:  # opening the write end succeeds once the command has opened the read end
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO or time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        time.sleep(0.2)  # from open() into read(), which waits for data
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if writer is not None:
            os.close(writer)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err.splitlines() == ["sipe check-params: interrupted"]


def test_a_bug_keeps_its_traceback(monkeypatch, tmp_path):
    """Only errors the user can cause become one line: any other exception propagates."""
    params = tmp_path / "params.yaml"
    params.write_text(_params_text())

    def broken(stage, args, params):
        return {}["no such key"]

    monkeypatch.setitem(COMMANDS, "check-params", dataclasses.replace(COMMANDS["check-params"], run=broken))
    with pytest.raises(KeyError):
        main(["check-params", "--params", str(params)])


def test_yaml_and_json_errors_without_a_file_are_still_one_line(monkeypatch, tmp_path, capsys):
    """A JSON or YAML error that no reader attached a path to is still one line (the handler's fallback)."""
    params = tmp_path / "params.yaml"
    params.write_text(_params_text())
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [\n")

    def from_file():
        with open(broken) as handle:
            return yaml.safe_load(handle)

    json_message = "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    for error, expected in ((lambda: json.loads("{"), json_message), (from_file, f"{broken}: not valid YAML (line 2)")):
        monkeypatch.setitem(COMMANDS, "check-params",
                            dataclasses.replace(COMMANDS["check-params"], run=lambda s, a, p, e=error: e()))
        assert _run(capsys, ["check-params", "--params", params]) == f"sipe check-params: error: {expected}"
