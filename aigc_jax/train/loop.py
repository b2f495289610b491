"""One training loop for every system: sharded jitted steps, periodic eval and samples, metrics,
checkpoints with auto-resume, a NaN/Inf guard and SIGTERM / Ctrl-C handling."""

import contextlib
import dataclasses
import json
import math
import pathlib
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import tqdm

from aigc_jax.errors import Interrupted, UserError
from aigc_jax.systems.base import System
from aigc_jax.train import config as config_lib
from aigc_jax.train import mesh as mesh_lib
from aigc_jax.train import optim
from aigc_jax.train.checkpoint import Checkpointer
from aigc_jax.train.state import TrainState, abstract_train_state, create_train_state
from aigc_jax.train.writer import MetricWriter


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "seed": 0,
            "num_steps": 1000,
            "max_train_seconds": 0.0,  # > 0: also stop (checkpoint, eval) after this much training per run
            "batch_size": 32,  # global, over all devices and processes
            "log_every": 50,
            "eval_every": 500,  # 0: only at the end
            "eval_batches": 20,  # periodic eval reads this many batches; 0 reads the whole split
            "final_eval_batches": 0,  # the final eval; 0 reads the whole evaluation split
            "checkpoint_every": 500,
            "keep_checkpoints": 3,
        }
    )


def system_config(name: str, preset: str, presets: Sequence[str]) -> ml_collections.ConfigDict:
    """The parts every system's config shares: name, preset, loop, optimizer and mesh settings."""
    if preset not in presets:
        raise UserError(f"unknown preset {preset!r} for {name}; choose one of {', '.join(presets)}")
    config = ml_collections.ConfigDict()
    config.name = name
    config.preset = preset
    config.train = default_config()
    config.optim = optim.default_config()
    config.mesh = ml_collections.ConfigDict(
        {
            "shape": (-1, 1, 1),  # (data, fsdp, tensor); -1 fills
            "cpu_devices": 0,  # > 0: a CPU-only host is split into this many devices (mesh.split_cpu_host)
        }
    )
    return config


@contextlib.contextmanager
def _stop_request() -> Iterator[dict[str, int]]:
    """`{"signal": n}`, n set to SIGTERM or SIGINT (Ctrl-C) once one arrives, 0 before: the loop then
    saves a checkpoint and stops. A second Ctrl-C stops at once (KeyboardInterrupt), without saving."""
    request = {"signal": 0}

    def handler(signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and request["signal"]:
            raise KeyboardInterrupt
        request["signal"] = signum
        if signum == signal.SIGINT:
            print(
                "\nCtrl-C: stopping after this step with a checkpoint (Ctrl-C again: at once)",
                file=sys.stderr,
            )

    try:
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    except ValueError:  # not the main thread (e.g. a notebook worker): no handler
        yield request
        return
    try:
        yield request
    finally:
        for sig, old_handler in previous.items():
            signal.signal(sig, old_handler)


@contextlib.contextmanager
def activate(mesh: jax.sharding.Mesh) -> Iterator[None]:
    """The mesh and logical rules every traced step needs."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(mesh_lib.RULES):
        yield


def jit_steps(system: System, shardings: Any, mesh: jax.sharding.Mesh) -> tuple[Any, Any]:
    batch = mesh_lib.batch_sharding(mesh)
    replicated = mesh_lib.replicated(mesh)
    train_step = jax.jit(
        system.train_step,
        in_shardings=(shardings, batch),
        out_shardings=(shardings, replicated),
        donate_argnums=0,
    )
    eval_step = jax.jit(system.eval_step, in_shardings=(shardings, batch), out_shardings=replicated)
    return train_step, eval_step


def fresh_train_step(system: System, mesh: jax.sharding.Mesh) -> tuple[TrainState, Any]:
    """A new train state on `mesh` (seed 0) and the system's jitted train step for it, as tests and step
    benchmarks run them. Call inside `activate(mesh)`."""
    state, shardings = create_train_state(system.init_variables, system.tx, mesh, jax.random.PRNGKey(0))
    train_step, _ = jit_steps(system, shardings, mesh)
    return state, train_step


def restore_state(system: System, workdir: str | pathlib.Path, mesh: jax.sharding.Mesh) -> TrainState:
    """The latest checkpoint in `workdir`, placed on `mesh` (for eval and sampling)."""
    checkpointer = Checkpointer(workdir, read_only=True)
    target = abstract_train_state(system.init_variables, system.tx, mesh)
    state = checkpointer.restore(target)
    checkpointer.close()
    return state


def evaluate_totals(
    system: System, state: TrainState, eval_step: Any, mesh: jax.sharding.Mesh, max_batches: int | None = None
) -> dict[str, np.ndarray]:
    """The eval step's sums over the evaluation split, added up on the host in float64."""
    totals: dict[str, np.ndarray] = {}
    for batch in system.eval_batches(max_batches):
        sums = jax.device_get(eval_step(state, mesh_lib.shard_batch(batch, mesh)))
        sums = {k: np.asarray(v, np.float64) for k, v in sums.items()}
        totals = sums if not totals else {k: totals[k] + v for k, v in sums.items()}
    if not totals:
        raise UserError(
            "the evaluation split produced no batches; check config.train.batch_size and the data"
        )
    return totals


def evaluate(
    system: System, state: TrainState, eval_step: Any, mesh: jax.sharding.Mesh, max_batches: int | None = None
) -> dict[str, float]:
    return system.summarize_eval(evaluate_totals(system, state, eval_step, mesh, max_batches))


def evaluate_state(system: System, state: TrainState, mesh: jax.sharding.Mesh) -> dict[str, float]:
    """A placed (e.g. restored) state, evaluated on the system's whole evaluation split."""
    _, eval_step = jit_steps(system, jax.tree.map(lambda x: x.sharding, state), mesh)
    return evaluate(system, state, eval_step, mesh)


def _check_finite(
    history: list[dict[str, jax.Array]], step: int, last_saved: int | None, workdir: pathlib.Path
) -> dict[str, float]:
    """The mean of each metric over `history`, the steps up to `step`; a divergence error if any is not
    finite, naming the newest checkpoint that is good.

    A step's loss is computed before its update, so the first non-finite loss, at step f, convicts the
    weights of step f - 1: a checkpoint saved at f - 1 holds them, one saved earlier is good."""
    per_step = jax.device_get(history)
    finite = [all(math.isfinite(float(v)) for v in metrics.values()) for metrics in per_step]
    means = {name: float(np.mean([m[name] for m in per_step])) for name in per_step[0]}
    if all(finite):
        return means
    first_bad = step - len(history) + 1 + finite.index(False)
    bad = {k: v for k, v in means.items() if not math.isfinite(v)}
    checkpoints = workdir / "checkpoints"
    if last_saved is None:
        kept = "no checkpoint had been written yet"
    elif last_saved == first_bad - 1:
        kept = (
            f"checkpoint {last_saved} holds the weights that diverged (it was saved before their loss was "
            f"computed): move {checkpoints / str(last_saved)} away to resume from the one before it"
        )
    else:
        kept = f"the last good checkpoint (step {last_saved}) is kept in {checkpoints}"
    raise UserError(
        f"training diverged at step {first_bad}: {bad}; {kept}. Lower --config.optim.learning_rate or "
        "raise --config.optim.warmup_steps, then run the same command to resume"
    )


def _check_final_eval(metrics: dict[str, float], step: int, workdir: pathlib.Path) -> None:
    """The last update is checked by no training loss: a non-finite evaluation loss convicts it. (Other
    metrics may be NaN by definition, e.g. the accuracy of a class the split lacks.)"""
    bad = {k: v for k, v in metrics.items() if ("loss" in k or "nll" in k) and not math.isfinite(v)}
    if bad:
        raise UserError(
            f"training diverged in its last update: the final evaluation gives {bad}, and checkpoint "
            f"{step} holds those weights. Move {workdir / 'checkpoints' / str(step)} away and run again "
            "with a lower --config.optim.learning_rate to resume from the checkpoint before it"
        )


@dataclasses.dataclass(frozen=True)
class FitResult:
    metrics: dict[str, float]  # the final evaluation, also in workdir/eval.json
    steps: int
    train_seconds: float  # time in train steps of this invocation, without eval, sampling or saving


def _check_loop_config(config: ml_collections.ConfigDict) -> None:
    """Settings that would otherwise fail mid-run (a division by zero) or, for `keep_checkpoints` < 1,
    make Orbax delete every checkpoint in the workdir."""
    for key in ("num_steps", "batch_size", "log_every", "checkpoint_every", "keep_checkpoints"):
        if config[key] < 1:
            raise UserError(f"config.train.{key} must be at least 1, not {config[key]}")
    for key in ("eval_every", "eval_batches", "final_eval_batches", "max_train_seconds"):
        if config[key] < 0:
            raise UserError(f"config.train.{key} must be 0 (no limit / off) or more, not {config[key]}")


def _interrupted(signum: int, step: int) -> Interrupted:
    name = signal.Signals(signum).name
    return Interrupted(
        f"stopped by {name} at step {step}; checkpoint saved, run again to resume", 128 + signum
    )


def fit(system: System, workdir: str | pathlib.Path, mesh: jax.sharding.Mesh) -> FitResult:
    """Trains `system` to `config.train.num_steps`, resuming from `workdir` if it holds a checkpoint.

    The workdir's config.json is (re)written only once its checkpoint, if any, has restored under this
    config."""
    config = system.config.train
    _check_loop_config(config)
    config_lib.check_fractions(system.config)
    mesh_lib.check_batch_size(config.batch_size, mesh)
    workdir = pathlib.Path(workdir)
    config_lib.check_workdir(workdir, system.config)
    checkpointer = Checkpointer(workdir, keep=config.keep_checkpoints)
    writer = MetricWriter(workdir)
    samples_dir = workdir / "samples"
    try:
        with activate(mesh):
            with _stop_request() as stop:
                state, shardings = create_train_state(
                    system.init_variables, system.tx, mesh, jax.random.PRNGKey(config.seed)
                )
                train_iterator = iter(system.train_dataset())
                # a missing or misnamed evaluation split fails now, not at the first evaluation
                next(iter(system.eval_batches(1)), None)
                last_saved = checkpointer.latest_step()
                if last_saved is not None:
                    state = checkpointer.restore(
                        abstract_train_state(system.init_variables, system.tx, mesh), train_iterator
                    )
                    print(f"resuming from step {last_saved} in {checkpointer.directory}")
                config_lib.record_config(workdir, system.config)
                train_step, eval_step = jit_steps(system, shardings, mesh)
                start = int(state.step)
                history: list[dict[str, jax.Array]] = []
                items, paused, train_seconds = 0, 0.0, 0.0
                tick = time.perf_counter()
                bar = tqdm.tqdm(
                    total=config.num_steps,
                    initial=start,
                    desc=system.config.name,
                    mininterval=2.0,
                    miniters=1,
                )
                for step in range(start + 1, config.num_steps + 1):
                    batch = next(train_iterator)
                    items += system.count_items(batch)
                    state, metrics = train_step(state, mesh_lib.shard_batch(batch, mesh))
                    history.append(metrics)
                    bar.update(1)
                    out_of_time = bool(config.max_train_seconds) and (
                        train_seconds + time.perf_counter() - tick - paused >= config.max_train_seconds
                    )
                    is_last = step == config.num_steps or out_of_time
                    if step % config.log_every == 0 or is_last or stop["signal"]:
                        means = _check_finite(history, step, last_saved, workdir)
                        elapsed = time.perf_counter() - tick - paused
                        train_seconds += elapsed
                        means |= {
                            "learning_rate": float(system.schedule(step - 1)),
                            "step_time": elapsed / len(history),
                            "items_per_second": items / elapsed,
                        }
                        writer.write(step, "train", means)
                        bar.set_postfix({k: f"{v:.4f}" for k, v in means.items() if k.endswith("loss")})
                        history, items, paused, tick = [], 0, 0.0, time.perf_counter()
                    pause_start = time.perf_counter()
                    if (config.eval_every and step % config.eval_every == 0) and not is_last:
                        metrics = evaluate(system, state, eval_step, mesh, config.eval_batches or None)
                        writer.write(step, "eval", metrics)
                        bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
                        # one key for every periodic sample, so the pictures show progress on the same noise
                        outputs = system.sample(state, jax.random.PRNGKey(config.seed))
                        system.write_samples(outputs, samples_dir, f"step_{step:07d}")
                    if step % config.checkpoint_every == 0 or is_last or stop["signal"]:
                        if history:  # never save a state whose loss has not been checked
                            _check_finite(history, step, last_saved, workdir)
                        checkpointer.save(step, state, train_iterator)
                        last_saved = step
                    paused += time.perf_counter() - pause_start
                    if out_of_time:
                        bar.write(f"stopping at step {step}: config.train.max_train_seconds reached")
                        break
                    if stop["signal"]:
                        checkpointer.wait()
                        raise _interrupted(stop["signal"], step)
                bar.close()
                checkpointer.wait()
            if stop["signal"]:  # arrived after the last step's check; that step is saved
                raise _interrupted(stop["signal"], int(state.step))
            # Outside the handler: a SIGTERM during the final evaluation and samples ends the process at
            # once, as it should (the last checkpoint is already written).
            final = evaluate(system, state, eval_step, mesh, config.final_eval_batches or None)
            _check_final_eval(final, int(state.step), workdir)
            writer.write(int(state.step), "eval", final)
            (workdir / "eval.json").write_text(json.dumps({"step": int(state.step), **final}, indent=2))
            outputs = system.sample(state, jax.random.PRNGKey(config.seed))
            system.write_samples(outputs, samples_dir, f"step_{int(state.step):07d}")
            return FitResult(final, int(state.step), train_seconds)
    finally:
        checkpointer.close()
        writer.close()
