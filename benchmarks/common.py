"""Timing helpers for side-by-side benchmarks: alternate the contenders, report medians and ratios.

Both sides run on the same hardware: the CPU here, or, where JAX finds a GPU and PyTorch has CUDA, that
GPU (the result file then ends in `__gpu.json`, beside the CPU one)."""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jax

from aigc_jax import results
from aigc_jax.train import loop
from aigc_jax.train import mesh as mesh_lib
from aigc_jax.train.state import param_count

RESULTS = pathlib.Path(__file__).parent / "results"


def alternate(
    contenders: dict[str, Callable[[], None]], warmup: int = 3, repeats: int = 15, steps_per_turn: int = 1
) -> dict[str, list[float]]:
    """Seconds of each call of each contender, measured in turns (A, B, A, B, ... with `steps_per_turn`
    consecutive calls per turn) so that machine noise hits both alike; `repeats` turns each. Each callable
    must block until its work is done.

    Turns of several steps measure each contender as a training loop runs it, back to back: a step right
    after the other framework's is slower (the cnn_fashion cpu step, one process per protocol, AMD EPYC
    family 26: JAX 20.6 ms one-for-one against 18.9–19.3 in turns of 8, PyTorch 15.5 against 13.6–14.3;
    a 50 ms pause before every step made JAX's 28.6), and the medians then see only the steps that follow
    their own kind.
    """
    for run in contenders.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            for _ in range(steps_per_turn):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    return times


def add_turn_options(parser: argparse.ArgumentParser, turns: int) -> None:
    """`--turns` and `--steps-per-turn`: how a step benchmark calls `alternate`; `--processes`: how many
    fresh processes measure (`pooled_processes`); `--child`, internal: measure in this process."""
    parser.add_argument("--turns", type=int, default=turns, help="turns of each framework")
    parser.add_argument("--steps-per-turn", type=int, default=8, help="consecutive steps in a turn")
    parser.add_argument("--processes", type=int, default=3, help="fresh processes, one after another")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)


def pooled_processes(
    script: str, args: list[str], processes: int, label: str
) -> tuple[dict[str, list[float]], dict[str, Any], list[float]]:
    """Runs `script args --child` in `processes` fresh processes, one after another; each must print a JSON
    object with the `times` of `alternate` (contenders "jax" and "torch"). Prints each process's ratio of
    medians; returns the times pooled over the processes, the first process's object, and the ratios.

    Why processes: a JAX process's step time depends on the process (on the earlier AMD EPYC the
    cnn_fashion step took 33–38 ms in 15 of 18 fresh processes and 45–46 ms in 3; on the Zen 5 EPYC the
    gpt_shakespeare step 46–73 ms), so one process can misstate a ratio by a third."""
    runs = [child_json(script, [*args, "--child"]) for _ in range(processes)]
    ratios = []
    for number, run in enumerate(runs, 1):
        step = medians(run["times"])
        ratios.append(step["jax"] / step["torch"])
        print(
            f"{label} process {number}: jax {step['jax'] * 1e3:.1f} ms, torch {step['torch'] * 1e3:.1f} ms, "
            f"jax/torch = {ratios[-1]:.2f}",
            flush=True,
        )
    pooled = {side: [t for run in runs for t in run["times"][side]] for side in ("jax", "torch")}
    return pooled, runs[0], ratios


def run_step_benchmark(
    script: str, benchmark: str, args: argparse.Namespace, measure: Callable[[], dict[str, Any]]
) -> None:
    """A step benchmark's main, after `add_turn_options`: in a `--child` process, prints `measure()` (the
    `times` of `alternate`, the `shape` in words and `extra` fields for the result file) as JSON; otherwise
    runs `args.processes` children of `script` with this process's arguments and reports their steps pooled
    (`report_step_ratio`, under `args.preset`)."""
    if args.child:
        print(json.dumps(measure()))
        return
    times, first, process_ratios = pooled_processes(script, sys.argv[1:], args.processes, benchmark)
    report_step_ratio(
        benchmark,
        args.preset,
        first["shape"],
        times,
        processes=args.processes,
        process_ratios=process_ratios,
        steps_per_turn=args.steps_per_turn,
        **first["extra"],
    )


def alternating_processes(
    script: str, variants: dict[str, list[str]], rounds: int, label: str
) -> dict[str, list[float]]:
    """A/B(/C...) of settings that hold for a whole process: each round runs `script *args` for every
    variant in a fresh process, in turn, and collects the `step_seconds` each prints (`child_json`);
    returns them per variant, one per round. Variants compiled side by side in one process do not time
    fairly on XLA:CPU: such an A/B said the DCGAN step went 18.7 -> 15.3 ms with a rewrite that separate
    processes showed slower (README, Benchmarks)."""
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(rounds):
        for name, args in variants.items():
            step = child_json(script, args)["step_seconds"]
            seconds[name].append(step)
            print(f"round {round_ + 1}: {label} {name} {step * 1e3:7.1f} ms", flush=True)
    return seconds


def child_json(script: str, args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Runs `python script args` in a fresh process (for settings that hold for a whole process) and
    returns the JSON object on its last line of output."""
    environ = dict(os.environ) if env is None else env
    done = subprocess.run([sys.executable, script, *args], env=environ, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{script} {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_seconds(run: Callable[[], None], steps: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in times.items()}


def paired_ratios(numerator: list[float], denominator: list[float]) -> dict[str, float]:
    """Quartiles of the ratios of calls made one after the other. On a shared machine a single ratio of
    medians moves by ±5-10% between runs; the middle half of the paired ratios shows how far."""
    q1, median, q3 = statistics.quantiles(
        [a / b for a, b in zip(numerator, denominator, strict=True)], n=4, method="inclusive"
    )
    return {"q1": q1, "median": median, "q3": q3}


def jax_train_step(system: Any, batch: dict[str, Any]) -> tuple[Callable[[], None], int]:
    """The system's jitted train step on the mesh `aigc-jax train` builds from its config (a CPU host split
    as `config.mesh.cpu_devices` says), one call per run(); and the system's parameter count."""
    mesh = mesh_lib.mesh_for(system.config)
    with loop.activate(mesh):
        state, train_step = loop.fresh_train_step(system, mesh)
    sharded = mesh_lib.shard_batch(batch, mesh)
    box = {"state": state}

    def run() -> None:
        with loop.activate(mesh):
            box["state"], metrics = train_step(box["state"], sharded)
        jax.block_until_ready(metrics)

    return run, param_count(state.params)


def torch_device() -> Any:
    """Where the PyTorch side runs: the GPU when JAX runs on one too (both frameworks on one chip),
    else the CPU."""
    import torch

    on_gpu = jax.default_backend() == "gpu" and torch.cuda.is_available()
    return torch.device("cuda" if on_gpu else "cpu")


def torch_synchronized(run: Callable[[], None], device: Any) -> Callable[[], None]:
    """`run`, made to block until its work is done: PyTorch queues GPU kernels and returns at once."""
    if device.type != "cuda":
        return run
    import torch

    def synchronized() -> None:
        run()
        torch.cuda.synchronize(device)

    return synchronized


def report_step_ratio(
    benchmark: str, preset: str, shape: str, times: dict[str, list[float]], **extra: Any
) -> float:
    """Prints the JAX / PyTorch train-step ratio (of the median step times) with the spread of the paired
    ratios, and writes `results/{benchmark}__{preset}.json` (`...__{preset}__gpu.json` when both ran on
    a GPU). `times` are `alternate`'s."""
    import torch  # the bench extra; imported here so timing helpers work without it

    step = medians(times)
    ratio = step["jax"] / step["torch"]
    paired = paired_ratios(times["jax"], times["torch"])
    print(
        f"{benchmark} ({shape}): jax {step['jax'] * 1e3:.1f} ms, torch {step['torch'] * 1e3:.1f} ms, "
        f"jax/torch = {ratio:.2f} (paired steps: middle half {paired['q1']:.2f}-{paired['q3']:.2f})",
        flush=True,
    )
    backend = jax.default_backend()
    results.write(
        RESULTS / f"{benchmark}__{preset}{'' if backend == 'cpu' else f'__{backend}'}.json",
        benchmark=benchmark,
        preset=preset,
        shape=shape,
        metrics={
            "jax_step_seconds": step["jax"],
            "torch_step_seconds": step["torch"],
            "jax_over_torch": ratio,
            "jax_over_torch_paired_quartiles": paired,
        },
        target={"jax_over_torch_at_most": 1.0},
        versions={"jax": jax.__version__, "torch": torch.__version__},
        jax_devices=jax.device_count(),  # the train mesh's, all of them (mesh_lib.mesh_for)
        torch_threads=torch.get_num_threads(),
        torch_device=str(torch_device()),
        repeats=len(times["jax"]),
        **extra,
    )
    return ratio
