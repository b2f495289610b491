"""Timing helpers for side-by-side benchmarks: alternate the contenders, report medians and ratios."""

import pathlib
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax

from aigc_jax import results

RESULTS = pathlib.Path(__file__).parent / "results"


def alternate(
    contenders: dict[str, Callable[[], None]], warmup: int = 3, repeats: int = 15
) -> dict[str, float]:
    """Median seconds per call of each contender, measured in turn (A, B, A, B, ...) so that machine noise
    hits both alike. Each callable must block until its work is done."""
    for run in contenders.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def report_step_ratio(
    benchmark: str, preset: str, shape: str, times: dict[str, float], repeats: int, **extra: Any
) -> float:
    """Prints the JAX / PyTorch train-step ratio and writes `results/{benchmark}__{preset}.json`."""
    import torch  # the bench extra; imported here so timing helpers work without it

    ratio = times["jax"] / times["torch"]
    print(
        f"{benchmark} ({shape}): jax {times['jax'] * 1e3:.1f} ms, torch {times['torch'] * 1e3:.1f} ms, "
        f"jax/torch = {ratio:.2f}",
        flush=True,
    )
    results.write(
        RESULTS / f"{benchmark}__{preset}.json",
        benchmark=benchmark,
        preset=preset,
        shape=shape,
        metrics={
            "jax_step_seconds": times["jax"],
            "torch_step_seconds": times["torch"],
            "jax_over_torch": ratio,
        },
        target={"jax_over_torch_at_most": 1.0},
        versions={"jax": jax.__version__, "torch": torch.__version__},
        torch_threads=torch.get_num_threads(),
        repeats=repeats,
        **extra,
    )
    return ratio
