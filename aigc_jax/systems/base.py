"""The contract every system meets, so one loop and one CLI serve them all."""

import pathlib
from collections.abc import Iterator
from typing import Any, Protocol

import grain
import jax
import ml_collections
import numpy as np
import optax

from aigc_jax.errors import UserError
from aigc_jax.systems import option_flag
from aigc_jax.train import config as config_lib
from aigc_jax.train.state import TrainState

Batch = dict[str, Any]
Metrics = dict[str, jax.Array]


class System(Protocol):
    """One trainable system, built from its config by its module's `build(config, workdir)`.

    Steps are pure functions of (state, batch); the loop jits them with explicit shardings. Randomness
    comes from `state.rng` folded with the step number, never from global state.
    """

    config: ml_collections.ConfigDict
    tx: optax.GradientTransformation
    schedule: optax.Schedule

    def init_variables(self, rng: jax.Array) -> dict[str, Any]:
        """Linen variables (params boxed with logical axis names, plus any model state)."""

    def train_step(self, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]: ...

    def eval_step(self, state: TrainState, batch: Batch) -> Metrics:
        """Per-batch sums; the entry `weight` is their common denominator (e.g. the token count)."""

    def summarize_eval(self, totals: dict[str, np.ndarray]) -> dict[str, float]:
        """Turns summed eval outputs (float64, any shape) into reported scalar metrics."""

    def train_dataset(self) -> grain.IterDataset: ...

    def eval_batches(self, max_batches: int | None = None) -> Iterator[Batch]: ...

    def count_items(self, batch: Batch) -> int:
        """What throughput counts for this system: tokens, examples, pixels."""

    def sample(self, state: TrainState, rng: jax.Array, **options: Any) -> Any: ...

    def write_samples(self, outputs: Any, directory: pathlib.Path, name: str) -> list[pathlib.Path]: ...


def write_texts(
    texts: list[str], directory: pathlib.Path, name: str, separator: str = "\n\n=====\n\n"
) -> list[pathlib.Path]:
    """The `write_samples` of systems that generate text: `directory/name.txt`, `separator` between texts."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.txt"
    path.write_text(separator.join(texts) + "\n")
    return [path]


def sample_options(defaults: ml_collections.ConfigDict, options: dict[str, Any]) -> dict[str, Any]:
    """`config.sample` overridden by the caller's options; unknown names are a `UserError`. Text values
    (from the command line) are parsed into the type of the default they replace, so `--prompt 42` stays
    text and `--temperature hot` is a `UserError`."""
    unknown = set(options) - set(defaults)
    if unknown:
        flags = [option_flag(name) for name in sorted(unknown)]
        known = [option_flag(name) for name in sorted(defaults)]
        raise UserError(f"this system's sample takes no {', '.join(flags)}; its options: {', '.join(known)}")

    def typed(name: str, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return config_lib.convert(option_flag(name), value, defaults[name])

    chosen = defaults.to_dict() | {k: typed(k, v) for k, v in options.items() if v is not None}
    for name, value in chosen.items():  # counts, lengths, temperatures, top-k / top-p, beam sizes
        if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            raise UserError(f"{option_flag(name)} must be 0 or more, not {value}")
    check_top_p(chosen.get("top_p", 1.0))
    return chosen


def check_top_p(top_p: float) -> None:
    """Top-p sampling keeps the likeliest tokens whose probabilities sum to `top_p`: a mass in (0, 1]."""
    if not 0 < top_p <= 1:
        raise UserError(f"--top-p is a probability mass in (0, 1], not {top_p}")
