"""Step times with and without aigc_jax/host.py's heap setting, each in its own fresh process, alternating.

    python benchmarks/heap_setting.py [--rounds 3] [--steps 20]

The setting holds for a whole process (glibc's mallopt, before the first computation), so every
measurement is a child process: it sets glibc to keep freed memory unless AIGC_JAX_MALLOC_DEFAULTS=1 is in
its environment, builds one contender's step as the step benchmarks do, and reports the median of `--steps`
timed steps after warm-up and the minor page faults per step. Contenders: the JAX train steps of
gpt_shakespeare, transformer_g2p (their systems set the heap themselves when built) and cnn_fashion (which
does not; measured to show why), and the PyTorch G2P step (whether the setting slows PyTorch, which shares
the process in the step benchmarks). Each round runs every contender kept, then with the defaults. Writes
benchmarks/results/heap_setting__cpu.json with each child's numbers and the medians per contender.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import g2p_step
import gpt_step
import image_steps
from common import RESULTS

from aigc_jax import host, results


def _g2p(side: str) -> Callable[[], None]:
    system, batch = g2p_step.setup("cpu")
    return (g2p_step.jax_step if side == "jax" else g2p_step.torch_step)(system, batch)[0]


CONTENDERS: dict[str, Callable[[], Callable[[], None]]] = {
    "gpt_shakespeare jax": lambda: gpt_step.jax_step(*gpt_step.setup("cpu")),
    "transformer_g2p jax": lambda: _g2p("jax"),
    "transformer_g2p torch": lambda: _g2p("torch"),
    "cnn_fashion jax": lambda: image_steps.jax_step(*image_steps.setup("cnn_fashion")[1:])[0],
}
SETTINGS = {"kept": {}, "defaults": {host.KEEP_DEFAULTS_ENV: "1"}}


def measure(contender: str, steps: int, warmup: int = 5) -> dict[str, float | str]:
    """In this process: the contender's median step time and minor page faults per timed step."""
    host.keep_freed_memory()
    run = CONTENDERS[contender]()
    for _ in range(warmup):
        run()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {
        "malloc": host.malloc_setting(),
        "step_seconds": statistics.median(times),
        "page_faults_per_step": faults / steps,
    }


def child(contender: str, setting: str, steps: int) -> dict[str, float | str]:
    environ = {k: v for k, v in os.environ.items() if k != host.KEEP_DEFAULTS_ENV} | SETTINGS[setting]
    command = [sys.executable, __file__, "--child", contender, "--steps", str(steps)]
    done = subprocess.run(command, env=environ, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{contender} ({setting}) failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.steps)))
        return
    runs: dict[str, dict[str, list]] = {c: {s: [] for s in SETTINGS} for c in CONTENDERS}
    for round_ in range(args.rounds):
        for contender in CONTENDERS:
            for setting in SETTINGS:
                record = child(contender, setting, args.steps)
                runs[contender][setting].append(record)
                print(
                    f"round {round_ + 1}: {contender:22s} {setting:8s} "
                    f"{record['step_seconds'] * 1e3:7.1f} ms, "
                    f"{record['page_faults_per_step']:8.0f} page faults per step",
                    flush=True,
                )
    medians = {
        contender: {
            f"{setting}_step_seconds": statistics.median(r["step_seconds"] for r in records)
            for setting, records in by_setting.items()
        }
        for contender, by_setting in runs.items()
    }
    for contender, m in medians.items():
        m["kept_over_defaults"] = m["kept_step_seconds"] / m["defaults_step_seconds"]
        ratio = m["kept_over_defaults"]
        print(f"{contender:22s} kept / defaults = {ratio:.2f} (medians of {args.rounds} processes)")
    results.write(
        RESULTS / "heap_setting__cpu.json",
        benchmark="heap_setting",
        metrics=medians,
        runs=runs,
        rounds=args.rounds,
        steps=args.steps,
    )


if __name__ == "__main__":
    main()
