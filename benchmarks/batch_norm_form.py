"""JAX train-step time of the BatchNorm systems with `convnets.BatchNorm` against Linen's `nn.BatchNorm`.

    python benchmarks/batch_norm_form.py [--system cnn_fashion|dcgan_fashion|all] [--repeats 40]

The two layers compute the same function with the same variables (tests/test_image_systems.py checks
outputs, statistics and gradients); they differ in form: ours normalises as x·a + b with per-channel a and
b, Linen as (x − mean)·a + bias. Each system's jitted `cpu` train step (as benchmarks/image_steps.py
builds it, on one real batch) is compiled once with each layer; the two steps alternate after warm-up.
Writes benchmarks/results/batch_norm_form__<backend>.json (cpu here) with the median step times and
their ratio per system.
"""

import argparse
import contextlib
import functools
from collections.abc import Callable, Iterator

import flax.linen as nn
import image_steps
import jax
from common import RESULTS, alternate, jax_train_step, medians, paired_ratios

from aigc_jax import results
from aigc_jax.models import convnets


@contextlib.contextmanager
def linen_batch_norm() -> Iterator[None]:
    """The convnets built (and traced) inside use Linen's layer, with the momentum ours fixes."""
    ours = convnets.BatchNorm
    convnets.BatchNorm = functools.partial(nn.BatchNorm, momentum=0.9)
    try:
        yield
    finally:
        convnets.BatchNorm = ours


def traced_step(name: str) -> Callable[[], None]:
    """The system's jitted train step, run once so that it is traced and compiled now."""
    _, system, batch = image_steps.setup(name)
    run, _ = jax_train_step(system, batch)
    run()
    return run


def benchmark(name: str, repeats: int) -> dict[str, float | dict[str, float]]:
    steps = {"ours": traced_step(name)}
    with linen_batch_norm():
        steps["linen"] = traced_step(name)
    times = alternate(steps, repeats=repeats)
    step = medians(times)
    paired = paired_ratios(times["ours"], times["linen"])
    print(
        f"{name}: convnets.BatchNorm {step['ours'] * 1e3:.1f} ms, nn.BatchNorm {step['linen'] * 1e3:.1f} ms, "
        f"ours/linen = {step['ours'] / step['linen']:.2f} "
        f"(paired steps: middle half {paired['q1']:.2f}-{paired['q3']:.2f})",
        flush=True,
    )
    return {
        "ours_step_seconds": step["ours"],
        "linen_step_seconds": step["linen"],
        "ours_over_linen": step["ours"] / step["linen"],
        "ours_over_linen_paired_quartiles": paired,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="all", choices=(*image_steps.SYSTEMS, "all"))
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    names = image_steps.SYSTEMS if args.system == "all" else (args.system,)
    metrics = {name: benchmark(name, args.repeats) for name in names}
    results.write(
        RESULTS / f"batch_norm_form__{jax.default_backend()}.json",
        benchmark="batch_norm_form",
        preset=image_steps.PRESET,
        metrics=metrics,
        repeats=args.repeats,
    )


if __name__ == "__main__":
    main()
