"""Metric sinks: a JSONL file (easy to read back in a notebook) and TensorBoard event files."""

import json
import pathlib
import time
from typing import Any

import numpy as np
from tensorboardX import SummaryWriter


def _plain(value: Any) -> float | int:
    value = np.asarray(value)
    return int(value) if np.issubdtype(value.dtype, np.integer) else float(value)


class MetricWriter:
    def __init__(self, workdir: str | pathlib.Path):
        workdir = pathlib.Path(workdir)
        self._jsonl = (workdir / "metrics.jsonl").open("a")
        self._tensorboard = SummaryWriter(str(workdir / "tensorboard"))

    def write(self, step: int, split: str, metrics: dict[str, Any]) -> None:
        plain = {name: _plain(value) for name, value in metrics.items()}
        record = {"step": int(step), "split": split, "time": time.time(), **plain}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        for name, value in plain.items():
            self._tensorboard.add_scalar(f"{split}/{name}", value, int(step))

    def close(self) -> None:
        self._jsonl.close()
        self._tensorboard.close()
