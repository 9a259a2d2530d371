"""``sipe predict``, ``sipe localise`` and ``sipe.load`` on the tiny synthetic set of tests/configs/stages.yaml:
the same labels as ``segment``, the same maps as ``make-cams``, odd image modes, bad files, the Python API."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import sipe
from sipe.cli import main
from sipe.data.synthetic import generate_synthetic
from sipe.io import read_label_png
from sipe.maps import load_maps
from sipe.models.checkpoint import save_model
from sipe.models.deeplab import DeepLabV2
from sipe.models.irn import IRN
from sipe.models.sipe_net import SIPENet
from sipe.predict import Localiser, Segmenter
from sipe.stages.cams import make_cams
from sipe.stages.deeplab import segment
from tests.tiny import TINY_DATA, merged, tiny_deeplab_params

SCALES = [1.0, 0.5]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The tiny dataset, random resnet18 DeepLab and SIPE checkpoints and a params file."""
    root = tmp_path_factory.mktemp("predict")
    (root / "data").mkdir()
    manifest = generate_synthetic(root / "data", TINY_DATA)
    torch.manual_seed(0)
    save_model(root / "deeplab.pt", DeepLabV2(manifest.num_classes, backbone="resnet18"), dataset="tiny")
    save_model(root / "sipe.pt", SIPENet(manifest.num_classes - 1, backbone="resnet18", weights=None))
    params = merged(tiny_deeplab_params(), {"cams": {"scales": SCALES}})
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root, manifest, params


def _list_file(path, manifest, split):
    path.write_text("".join(f"{manifest.image_path(split, i)}\n" for i in manifest.ids(split)))
    return path


def _run(root, *args):
    return main([args[0], "--params", str(root / "params.yaml"), "--workers", "1", "--device", "cpu", *args[1:]])


def test_predict_gives_the_labels_of_segment(setup, tmp_path):
    root, manifest, params = setup
    segment(params, root / "data", root / "deeplab.pt", tmp_path / "seg", "val", device="cpu")
    images = _list_file(tmp_path / "val.txt", manifest, "val")
    assert _run(root, "predict", "--model", str(root / "deeplab.pt"), "--images", str(images),
                "--out", str(tmp_path / "crf"), "--data", str(root / "data"), "--overlay", "--shares") == 0
    assert _run(root, "predict", "--model", str(root / "deeplab.pt"), "--images", str(images),
                "--out", str(tmp_path / "pred"), "--no-crf") == 0
    for image_id in manifest.ids("val"):
        for kind in ("crf", "pred"):
            np.testing.assert_array_equal(read_label_png(tmp_path / kind / f"{image_id}.png"),
                                          read_label_png(tmp_path / "seg" / kind / f"{image_id}.png"))
        with Image.open(tmp_path / "crf/overlays" / f"{image_id}.png") as figure:
            assert figure.format == "PNG" and figure.width > 100
    with open(tmp_path / "crf/shares.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["image", *manifest.classes] and len(rows) == 1 + len(manifest.ids("val"))
    assert all(abs(sum(float(x) for x in row[1:]) - 1) < 1e-4 for row in rows[1:])


def test_localise_gives_the_maps_of_make_cams(setup, tmp_path):
    root, manifest, params = setup
    make_cams(params, root / "data", root / "sipe.pt", tmp_path / "cams", role="train", device="cpu")
    labels = manifest.class_labels()
    for image_id in manifest.ids("train"):
        names = [manifest.classes[k] for k in labels[image_id]]
        assert _run(root, "localise", "--model", str(root / "sipe.pt"), "--data", str(root / "data"),
                    "--images", str(manifest.image_path("train", image_id)), "--out", str(tmp_path / "loc"),
                    "--classes", *names) == 0
        want, got = load_maps(tmp_path / "cams" / f"{image_id}.npz"), load_maps(tmp_path / "loc" / f"{image_id}.npz")
        for a, b in zip(want, got):
            np.testing.assert_array_equal(a, b)
        assert (tmp_path / "loc" / f"{image_id}.png").is_file()


def test_localise_top_k_and_class_ids(setup, tmp_path):
    root, manifest, _ = setup
    image = manifest.image_path("val", manifest.ids("val")[0])
    assert _run(root, "localise", "--model", str(root / "sipe.pt"), "--images", str(image),
                "--out", str(tmp_path), "--top-k", "2") == 0
    keys, cam, is_cam = load_maps(tmp_path / f"{image.stem}.npz")
    model = sipe.load(root / "sipe.pt", device="cpu")
    best = sorted((np.argsort(-model.scores(Image.open(image)))[:2] + 1).tolist())
    assert keys.tolist() == [0, *best] and cam.shape[0] == 2 and is_cam.shape[0] == 3
    assert model.classes == ["background"] + [f"class {k}" for k in range(1, manifest.num_classes)]  # no names
    by_id, _, _ = model.localise(Image.open(image), ["2", "class 1"], scales=SCALES)
    assert by_id.tolist() == [0, 1, 2]


def test_odd_image_modes(setup, tmp_path):
    root, manifest, _ = setup
    rgb = Image.open(manifest.image_path("val", manifest.ids("val")[0])).convert("RGB")
    folder = tmp_path / "in"
    folder.mkdir()
    rgb.convert("L").save(folder / "gray.png")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "rgba.png")
    rgb.convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.png")
    rgb.save(folder / "rgb.jpg", quality=95)
    assert _run(root, "predict", "--model", str(root / "deeplab.pt"), "--images", str(folder),
                "--out", str(tmp_path / "out"), "--overlay") == 0
    model = sipe.load(root / "deeplab.pt", device="cpu")
    for name, mode in (("gray", "L"), ("rgba", "RGBA"), ("palette", "P"), ("rgb", "RGB")):
        with Image.open(folder / f"{name}.{'jpg' if name == 'rgb' else 'png'}") as image:
            assert image.mode == mode
            expected = model.predict(image, flip=True, crf=True)  # tiny params: flip, crf
        np.testing.assert_array_equal(read_label_png(tmp_path / "out" / f"{name}.png"), expected)
    assert _run(root, "localise", "--model", str(root / "sipe.pt"), "--images", str(folder / "*.png"),
                "--out", str(tmp_path / "maps")) == 0
    assert sorted(p.stem for p in (tmp_path / "maps").glob("*.npz")) == ["gray", "palette", "rgba"]
    assert model.predict(np.asarray(rgb.convert("L")), flip=False).shape == (rgb.height, rgb.width)


@pytest.fixture
def bad_folder(setup, tmp_path):
    _, manifest, _ = setup
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_corrupt.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    (folder / "b_empty.png").touch()
    Image.open(manifest.image_path("val", manifest.ids("val")[0])).save(folder / "c_good.png")
    return folder


@pytest.mark.parametrize("command,model", [("predict", "deeplab.pt"), ("localise", "sipe.pt")])
def test_bad_images_stop_the_run(setup, bad_folder, tmp_path, capsys, command, model):
    root = setup[0]
    out = tmp_path / "out"
    assert _run(root, command, "--model", str(root / model), "--images", str(bad_folder), "--out", str(out)) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert err == [(f"sipe {command}: error: {bad_folder / 'a_corrupt.jpg'}: cannot read image "
                    f"(cannot identify image file '{bad_folder / 'a_corrupt.jpg'}')")]
    assert not out.exists() or not any(out.rglob("*"))  # nothing written, nothing half-written


@pytest.mark.parametrize("command,model,outputs", [("predict", "deeplab.pt", ["c_good.png"]),
                                                   ("localise", "sipe.pt", ["c_good.npz", "c_good.png"])])
def test_bad_images_are_skipped(setup, bad_folder, tmp_path, capsys, command, model, outputs):
    root = setup[0]
    out = tmp_path / "out"
    assert _run(root, command, "--model", str(root / model), "--images", str(bad_folder), "--out", str(out),
                "--on-error", "skip") == 0
    skipped = re.findall(r"WARNING sipe\.stages\.predict: skipped (.*)", capsys.readouterr().err)
    assert skipped == [(f"{bad_folder / 'a_corrupt.jpg'}: cannot read image (cannot identify image file "
                        f"'{bad_folder / 'a_corrupt.jpg'}')"), f"{bad_folder / 'b_empty.png'}: empty file (0 bytes)"]
    assert sorted(p.name for p in out.iterdir()) == outputs


def test_too_large_and_wrong_checkpoint(setup, tmp_path, capsys):
    root, manifest, _ = setup
    image = manifest.image_path("val", manifest.ids("val")[0])
    assert _run(root, "predict", "--model", str(root / "deeplab.pt"), "--images", str(image), "--out", str(tmp_path),
                "--max-pixels", "100") == 1
    assert "exceeds the limit of 100 pixels" in capsys.readouterr().err
    Image.new("RGB", (400, 1)).save(tmp_path / "line.png")
    assert _run(root, "predict", "--model", str(root / "deeplab.pt"), "--images", str(tmp_path / "line.png"),
                "--out", str(tmp_path / "out")) == 1
    assert capsys.readouterr().err.strip().endswith("line.png: image of 400x1 pixels is too small (sides of at least 8)")
    assert _run(root, "localise", "--model", str(root / "sipe.pt"), "--images", str(image), "--out", str(tmp_path),
                "--scales", "1", "0") == 1
    assert "need at least one positive scale, got [1.0, 0.0]" in capsys.readouterr().err
    assert _run(root, "predict", "--model", str(root / "sipe.pt"), "--images", str(image), "--out", str(tmp_path)) == 1
    assert capsys.readouterr().err.strip() == (f"sipe predict: error: {root / 'sipe.pt'}: not a DeepLab "
                                               f"(train-deeplab's model.pt) checkpoint")
    assert _run(root, "predict", "--model", str(root / "deeplab.pt"), "--images", str(tmp_path / "none*.png"),
                "--out", str(tmp_path)) == 1
    assert "no images in" in capsys.readouterr().err


def test_api_returns_the_arrays_of_the_commands(setup, tmp_path):
    root, manifest, _ = setup
    image_path = manifest.image_path("val", manifest.ids("val")[1])
    assert _run(root, "predict", "--model", str(root / "deeplab.pt"), "--images", str(image_path),
                "--out", str(tmp_path / "p"), "--flip", "--crf") == 0
    assert _run(root, "localise", "--model", str(root / "sipe.pt"), "--images", str(image_path),
                "--out", str(tmp_path / "l"), "--classes", "1", "3", "--data", str(root / "data")) == 0
    deeplab = sipe.load(root / "deeplab.pt", device="cpu", data=root / "data")
    assert isinstance(deeplab, Segmenter) and deeplab.classes == list(manifest.classes)
    labels = deeplab.predict(Image.open(image_path), flip=True, crf=True)
    np.testing.assert_array_equal(labels, read_label_png(tmp_path / "p" / f"{image_path.stem}.png"))
    net = sipe.load(root / "sipe.pt", device="cpu")
    assert isinstance(net, Localiser) and net.num_classes == manifest.num_classes - 1  # network attributes
    keys, cam, is_cam = net.localise(np.asarray(Image.open(image_path)), [1, 3], scales=SCALES)
    for a, b in zip((keys, cam.astype(np.float16), is_cam.astype(np.float16)),
                    load_maps(tmp_path / "l" / f"{image_path.stem}.npz")):
        np.testing.assert_array_equal(a, b)


def test_load_tells_the_networks_apart(tmp_path):
    save_model(tmp_path / "irn.pt", IRN("resnet18", weights=None))
    assert isinstance(sipe.load(tmp_path / "irn.pt", device="cpu"), IRN)
    caffe = DeepLabV2(3, backbone="resnet18", style="caffe")  # the style of the converted deeplab-pytorch init
    save_model(tmp_path / "caffe.pt", caffe, classes=["background", "cat", "dog"])
    model = sipe.load(tmp_path / "caffe.pt", device="cpu")
    assert model.classes == ["background", "cat", "dog"]  # from the checkpoint's meta
    assert model.predict(np.zeros((20, 30), np.uint8), msc=False).shape == (20, 30)
    torch.save({"model": {}, "config": {}}, tmp_path / "other.pt")
    with pytest.raises(sipe.errors.SipeError, match="not a checkpoint of the pipeline"):
        sipe.load(tmp_path / "other.pt")


def test_localise_with_converted_authors_weights(setup, tmp_path):
    from tests.models.test_convert import build_reference_state_dict

    root, manifest, _ = setup
    torch.save({"net": build_reference_state_dict(manifest.num_classes - 1)}, tmp_path / "final.pth")
    assert main(["convert-checkpoint", "--src", str(tmp_path / "final.pth"),
                 "--out", str(tmp_path / "authors.pt")]) == 0
    image = manifest.image_path("val", manifest.ids("val")[0])
    assert _run(root, "localise", "--model", str(tmp_path / "authors.pt"), "--images", str(image),
                "--out", str(tmp_path / "maps"), "--data", str(root / "data"), "--scales", "1.0") == 0
    keys, _, is_cam = load_maps(tmp_path / "maps" / f"{image.stem}.npz")
    assert len(keys) == 2 and is_cam.shape[1:] == Image.open(image).size[::-1]


def test_a_failure_on_one_image_names_it(bad_folder):
    from sipe.predict import ImageError
    from sipe.stages.predict import for_each_image, image_paths

    def work(path, image):
        raise RuntimeError("CUDA out of memory.\nTried to allocate ...")

    paths = image_paths([str(bad_folder / "c_good.png")])
    with pytest.raises(ImageError) as info:
        for_each_image(paths, work)
    assert str(info.value) == f"{paths[0]}: cannot process image (RuntimeError: CUDA out of memory.)"
    with pytest.raises(sipe.errors.SipeError, match="none of the 1 images could be used"):
        for_each_image(paths, work, on_error="skip")
