"""Metric sinks: a JSONL file (easy to read back in a notebook) and TensorBoard event files."""

import json
import pathlib
import time
from typing import Any

import numpy as np
from tensorboardX import SummaryWriter

from aigc_jax.errors import UserError


def _plain(value: Any) -> float | int:
    value = np.asarray(value)
    return int(value) if np.issubdtype(value.dtype, np.integer) else float(value)


def logged_train_seconds(workdir: str | pathlib.Path, up_to_step: int) -> float:
    """Seconds spent in train steps 1..`up_to_step` of `workdir`, over every run that trained it (a
    resumed run's own timer starts at zero): read back from the train records of metrics.jsonl, each of
    which holds its logging interval's mean `step_time`. A step logged twice (a run that went past its
    last checkpoint, then resumed) counts once, as its last record says. A line cut short by a killed
    run is skipped: at most one logging interval goes uncounted."""
    log = pathlib.Path(workdir) / "metrics.jsonl"
    if not log.is_file():
        raise UserError(
            f"cannot tell how long {workdir} trained: it has no metrics.jsonl (the training log that "
            "`aigc-jax train` writes); train in that workdir, or copy the log along with its checkpoints"
        )
    step_times = {}
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record["split"] == "train" and record["step"] <= up_to_step:
            step_times[record["step"]] = record["step_time"]
    total, previous = 0.0, 0
    for step in sorted(step_times):
        total += (step - previous) * step_times[step]
        previous = step
    return total


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
