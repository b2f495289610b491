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
    """The accelerator if there is one, else the CPU model and the cores this process may use.

    Cloud machines often name only the vendor line ("AMD EPYC"), so the CPU's family and model numbers
    and whether it has AVX-512 come with the name: CPU timings differ by generation (the same benchmark
    ran ~2x faster on an EPYC of family 26 than on the one before it).
    """
    devices = jax.devices()
    if devices[0].platform != "cpu":
        return f"{len(devices)} x {devices[0].device_kind}"
    return f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores (CPU)"


def cpu_model(cpuinfo: str | None = None) -> str:
    """'AMD EPYC (family 26, model 2, AVX-512)' from the first processor of /proc/cpuinfo's text."""
    if cpuinfo is None:
        path = pathlib.Path("/proc/cpuinfo")
        if not path.exists():
            return platform.processor() or platform.machine()
        cpuinfo = path.read_text()
    fields: dict[str, str] = {}
    for line in cpuinfo.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    name = fields.get("model name") or platform.processor() or platform.machine()
    details = [
        f"{label} {fields[key]}"
        for key, label in (("cpu family", "family"), ("model", "model"))
        if key in fields
    ]
    if "avx512f" in fields.get("flags", "").split():
        details.append("AVX-512")
    return f"{name} ({', '.join(details)})" if details else name


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
    """Writes `fields` plus command, hardware, malloc setting, XLA_FLAGS, git commit and date as JSON;
    returns the record.

    `wall_seconds`, unless given, is the time since this module was imported (the script's run), and
    `git_commit` the commit then; if the tree has moved since, `git_commit_at_write` says to what.
    """
    record = {
        "wall_seconds": time.time() - _IMPORTED,
        **fields,
        "command": command_line(),
        "hardware": hardware(),
        "malloc": host.malloc_setting(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "git_commit": _COMMIT_AT_START,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if (at_write := git_commit()) != _COMMIT_AT_START:
        record["git_commit_at_write"] = at_write
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record
