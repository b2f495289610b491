"""Timing helpers for side-by-side benchmarks: alternate the contenders, report medians and ratios."""

import statistics
import time
from collections.abc import Callable


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
