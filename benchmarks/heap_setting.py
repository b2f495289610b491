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
from collections.abc import Callable

import g2p_step
import gpt_step
import image_steps
from common import RESULTS, child_json, jax_train_step, median_seconds

from aigc_jax import host, results


def _g2p(side: str) -> Callable[[], None]:
    system, batch = g2p_step.setup("cpu")
    return (jax_train_step if side == "jax" else g2p_step.torch_step)(system, batch)[0]


CONTENDERS: dict[str, Callable[[], Callable[[], None]]] = {
    "gpt_shakespeare jax": lambda: gpt_step.jax_step(*gpt_step.setup("cpu")),
    "transformer_g2p jax": lambda: _g2p("jax"),
    "transformer_g2p torch": lambda: _g2p("torch"),
    "cnn_fashion jax": lambda: jax_train_step(*image_steps.setup("cnn_fashion")[1:])[0],
}
SETTINGS = {"kept": {}, "defaults": {host.KEEP_DEFAULTS_ENV: "1"}}
WARMUP = 5


def measure(contender: str, steps: int) -> dict[str, float | str]:
    """In this process: the contender's median step time and minor page faults per timed step."""
    host.keep_freed_memory()
    run = CONTENDERS[contender]()
    for _ in range(WARMUP):
        run()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    seconds = median_seconds(run, steps, warmup=0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {"malloc": host.malloc_setting(), "step_seconds": seconds, "page_faults_per_step": faults / steps}


def child(contender: str, setting: str, steps: int) -> dict[str, float | str]:
    environ = {k: v for k, v in os.environ.items() if k != host.KEEP_DEFAULTS_ENV} | SETTINGS[setting]
    return child_json(__file__, ["--child", contender, "--steps", str(steps)], environ)


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
