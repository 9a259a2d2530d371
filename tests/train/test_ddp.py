"""Data-parallel training (sipe.distributed through sipe.training.fit): per-rank batch slices, and the
equivalence of 2 gloo processes × batch b with 1 process × batch 2b, resumed under DDP.

SIPE keeps BatchNorm statistics frozen and its losses are per-sample means, so two ranks with half
of each global batch and averaged gradients follow the single-process trajectory up to the order of
floating-point reductions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from sipe import distributed
from sipe.stages.train_sipe import train_sipe
from sipe.training import EpochBatchSampler, RunBatchSampler, TrainingError
from tests.tiny import REPO, tiny_params

HERE = Path(__file__).resolve().parent


def test_rank_slices_of_every_global_batch_make_up_the_single_process_batch():
    single = list(RunBatchSampler(18, 6, 5, 0, 7))  # 3 steps per epoch, crosses two epoch boundaries
    ranks = [list(RunBatchSampler(18, 6, 5, 0, 7, rank=r, world_size=3)) for r in range(3)]
    assert all(len(batches) == 7 for batches in ranks)
    for step, batch in enumerate(single):
        assert [len(ranks[r][step]) for r in range(3)] == [2, 2, 2]
        assert ranks[0][step] + ranks[1][step] + ranks[2][step] == batch  # contiguous slices, same sample seeds
    resumed = list(RunBatchSampler(18, 6, 5, 4, 7, rank=1, world_size=3))
    assert resumed == ranks[1][4:]
    with pytest.raises(TrainingError, match="batch_size 6 is not a multiple of the 4 training processes"):
        EpochBatchSampler(18, 6, 5, 0, world_size=4)


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone --nproc_per_node=2 ARGS`` (gloo, one thread per rank)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="this torch build has no gloo process groups")
def test_two_gloo_ranks_follow_the_single_process_run_and_resume(tiny_data, tmp_path):
    params = tiny_params(epochs=1, batch_size=4, checkpoint_every=2)  # 16 images: 4 steps of 4 = 2 ranks × 2
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    torch.set_num_threads(1)
    single = train_sipe(params, tiny_data, tmp_path / "single", workers=1, device="cpu").parent

    # Two ranks, killed after step 3 (the checkpoint of step 2 survives), then resumed through the CLI.
    ddp = tmp_path / "ddp"
    proc = _torchrun(str(HERE / "ddp_interrupted.py"), str(params_file), str(tiny_data), str(ddp), "3", cwd=tmp_path)
    assert proc.returncode != 0 and "stopped after step 3" in proc.stderr
    assert (ddp / "resume.pt").is_file() and not (ddp / "model.pt").exists()
    log = tmp_path / "ddp.log"
    # `--` keeps torchrun from reading sipe's --log as an abbreviation of its own --log-dir.
    proc = _torchrun("-m", "sipe", "--", "train-sipe", "--params", str(params_file), "--data", str(tiny_data),
                     "--out", str(ddp), "--device", "cpu", "--workers", "1", "--log", str(log), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]

    one, two = pd.read_csv(single / "train/steps.csv"), pd.read_csv(ddp / "train/steps.csv")
    assert list(two.columns) == list(one.columns) and two["step"].tolist() == [1, 2, 3, 4]
    assert two["lr"].tolist() == one["lr"].tolist()
    for column in ("loss", "loss_cls", "loss_gsc", "grad_norm"):
        assert two[column].tolist() == pytest.approx(one[column].tolist(), rel=1e-5), column
    assert one["loss"].nunique() == 4  # a real trajectory, not a constant

    a = torch.load(single / "model.pt", weights_only=True)["model"]
    b = torch.load(ddp / "model.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=name)
    summary = json.loads((ddp / "train/train.json").read_text())
    assert (summary["processes"], summary["resumed_from"], summary["steps"]) == (2, 2, 4)
    assert not (ddp / "resume.pt").exists()
    text = log.read_text()  # rank 0 alone writes the log
    assert text.count("resuming at step 2 of 4") == 1 and text.count("wrote ") == 1 and "rank 1" not in text


def test_the_ddp_wrapper_runs_forward_and_answers_for_the_network_attributes(tmp_path):
    class Net(torch.nn.Module):
        scales = (1.0, 0.5)

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 1)

        def forward(self, x):
            return self.conv(x)

    store = torch.distributed.FileStore(str(tmp_path / "store"), 1)
    torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        net = Net()
        wrapped = distributed.DataParallel(net)
        x = torch.randn(2, 3, 4, 4)
        assert wrapped.scales == (1.0, 0.5) and wrapped.module is net
        torch.testing.assert_close(wrapped(x), net(x))
        with pytest.raises(AttributeError):
            wrapped.no_such_attribute
    finally:
        torch.distributed.destroy_process_group()
