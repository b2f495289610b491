"""JAX train-step time of the BatchNorm systems with `convnets.BatchNorm` against Linen's `nn.BatchNorm`.

    python benchmarks/batch_norm_form.py [--system cnn_fashion|dcgan_fashion|all] [--rounds 3] [--steps 40]

The two layers compute the same function with the same variables (tests/test_image_systems.py checks
outputs, statistics and gradients); they differ in form: ours normalises as x·a + b with per-channel a and
b, Linen as (x − mean)·a + bias. Each measurement is a fresh process that builds the system's jitted `cpu`
train step (as benchmarks/image_steps.py does, on one real batch) with one of the layers and reports the
median of `--steps` steps after warm-up; each round runs both layers, one after the other
(`common.alternating_processes`: variants compiled side by side in one process do not time fairly on
XLA:CPU). Writes benchmarks/results/batch_norm_form__<backend>.json (cpu here) with the medians over the
rounds and their ratio per system.
"""

import argparse
import contextlib
import functools
import json
import statistics
from collections.abc import Iterator

import flax.linen as nn
import image_steps
import jax
from common import RESULTS, alternating_processes, jax_train_step, median_seconds

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


def measure(name: str, form: str, steps: int) -> dict[str, float]:
    """In this process: the median train-step time of `name` built with the `form` ("ours" or "linen")."""
    with linen_batch_norm() if form == "linen" else contextlib.nullcontext():
        _, system, batch = image_steps.setup(name)
        run, _ = jax_train_step(system, batch)
        run()  # traced and compiled inside the context
    return {"step_seconds": median_seconds(run, steps)}


def benchmark(name: str, rounds: int, steps: int) -> dict[str, float | list[float]]:
    forms = {form: ["--child", name, form, "--steps", str(steps)] for form in ("ours", "linen")}
    seconds = alternating_processes(__file__, forms, rounds, name)
    ours, linen = (statistics.median(seconds[form]) for form in ("ours", "linen"))
    print(
        f"{name}: convnets.BatchNorm {ours * 1e3:.1f} ms, nn.BatchNorm {linen * 1e3:.1f} ms, "
        f"ours/linen = {ours / linen:.2f} (medians of {rounds} processes each)",
        flush=True,
    )
    return {
        "ours_step_seconds": ours,
        "linen_step_seconds": linen,
        "ours_over_linen": ours / linen,
        "ours_over_linen_by_round": [a / b for a, b in zip(seconds["ours"], seconds["linen"], strict=True)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="all", choices=(*image_steps.SYSTEMS, "all"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # NAME FORM
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child, args.steps)))
        return
    names = image_steps.SYSTEMS if args.system == "all" else (args.system,)
    metrics = {name: benchmark(name, args.rounds, args.steps) for name in names}
    results.write(
        RESULTS / f"batch_norm_form__{jax.default_backend()}.json",
        benchmark="batch_norm_form",
        preset=image_steps.PRESET,
        metrics=metrics,
        rounds=args.rounds,
        steps=args.steps,
    )


if __name__ == "__main__":
    main()
