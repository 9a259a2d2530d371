"""Run by torchrun from test_ddp.py: ``train_sipe`` on every rank, stopped by an exception after step STOP
(as if the job were killed), so that the next run resumes under DDP.

Usage: ddp_interrupted.py PARAMS DATA OUT STOP
"""

import sys
from pathlib import Path

import yaml

from sipe.stages.train_sipe import train_sipe


def main(params_file: str, data: str, out: str, stop: str) -> None:
    def on_step(step: int, row: dict) -> None:
        if step == int(stop):
            raise RuntimeError(f"stopped after step {step}")

    params = yaml.safe_load(Path(params_file).read_text())
    train_sipe(params, Path(data), Path(out), workers=1, device="cpu", on_step=on_step)


if __name__ == "__main__":
    main(*sys.argv[1:])
