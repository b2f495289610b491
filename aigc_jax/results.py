"""Result files for experiments and benchmarks: the numbers plus how, where and when they were made."""

import datetime
import json
import os
import pathlib
import platform
import shlex
import subprocess
import sys
import time
from typing import Any

import jax

from aigc_jax import host

_IMPORTED = time.time()  # scripts import this module first thing, so this approximates their start


def hardware() -> str:
    """The accelerator if there is one, else the CPU model and the cores this process may use."""
    devices = jax.devices()
    if devices[0].platform != "cpu":
        return f"{len(devices)} x {devices[0].device_kind}"
    model = platform.processor() or platform.machine()
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {len(os.sched_getaffinity(0))} cores (CPU)"


_NOT_CODE = (":(top,exclude)experiments/results", ":(top,exclude)benchmarks/results")


def git_commit() -> str:
    """`$AIGC_JAX_GIT_COMMIT` if set (a copy of the working tree run elsewhere, e.g. on an accelerator
    machine, whose own git history may be stale), else HEAD, marked if tracked files differ from it."""
    if os.environ.get("AIGC_JAX_GIT_COMMIT"):
        return os.environ["AIGC_JAX_GIT_COMMIT"]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout
        # result files are not code: a script that writes two of them is not "uncommitted" at the second
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *_NOT_CODE],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit.strip() + ("+uncommitted changes" if dirty.strip() else "")


# the code the script runs: a commit made while it runs (hours of training) is not that code
_COMMIT_AT_START = git_commit()


def command_line() -> str:
    return shlex.join([pathlib.Path(sys.executable).name, *sys.argv])


def write(path: str | pathlib.Path, **fields: Any) -> dict[str, Any]:
    """Writes `fields` plus command, hardware, malloc setting, git commit and date as JSON; returns the
    record.

    `wall_seconds`, unless given, is the time since this module was imported (the script's run), and
    `git_commit` the commit then; if the tree has moved since, `git_commit_at_write` says to what.
    """
    record = {
        "wall_seconds": time.time() - _IMPORTED,
        **fields,
        "command": command_line(),
        "hardware": hardware(),
        "malloc": host.malloc_setting(),
        "git_commit": _COMMIT_AT_START,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if (at_write := git_commit()) != _COMMIT_AT_START:
        record["git_commit_at_write"] = at_write
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record
