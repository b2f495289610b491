"""Train-step times of the systems' cpu presets with this CPU as one JAX device and split into several
(`config.mesh.cpu_devices`), each in its own fresh process, alternating.

    python benchmarks/cpu_devices.py [--devices 2] [--rounds 2] [--steps 20] [--system NAME ...]

JAX fixes its devices when it first uses them, so every measurement is a child process: it splits the host
(`mesh.split_cpu_host`) before anything touches JAX, builds the system from its `cpu` preset with that
`cpu_devices`, takes one real training batch, and reports the median of `--steps` timed steps of the system's
jitted train step (the step `aigc-jax train` runs, dropout and all) after warm-up. For each system, each of
`--rounds` rounds runs it on one device, then on `--devices` (`common.alternating_processes`). Writes
benchmarks/results/cpu_devices__cpu.json with each child's time and, per system, the medians and
`split_over_one` (< 1: the split is faster). The presets' `cpu_devices` follow from it (README, "A CPU-only
host can run as several devices").
"""

import argparse
import json
import statistics
import tempfile

from common import RESULTS, alternating_processes, jax_train_step, median_seconds

from aigc_jax import results, systems
from aigc_jax.train import mesh as mesh_lib

SYSTEMS = (
    "gpt_shakespeare",
    "cnn_fashion",
    "gan_mlp_fashion",
    "dcgan_fashion",
    "textcnn_reviews",
    "transformer_g2p",
    "fasttext_reviews",
    "dialogue_chitchat",
    "unet_fashion_scenes",
)


def measure(name: str, devices: int, steps: int) -> dict[str, float]:
    """In this process, split into `devices`: the system's median train-step time."""
    mesh_lib.split_cpu_host(devices)
    config = systems.load(name).get_config("cpu")
    config.mesh.cpu_devices = devices
    with tempfile.TemporaryDirectory() as workdir:
        system = systems.load(name).build(config, workdir)
        batch = dict(next(iter(system.train_dataset())))
    run, _ = jax_train_step(system, batch)
    return {"step_seconds": median_seconds(run, steps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--system", nargs="+", default=SYSTEMS, choices=systems.REGISTRY)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # NAME DEVICES
    args = parser.parse_args()
    if args.child:
        name, devices = args.child
        print(json.dumps(measure(name, int(devices), args.steps)))
        return
    splits = (1, args.devices)
    runs = {
        name: alternating_processes(
            __file__,
            {str(n): ["--child", name, str(n), "--steps", str(args.steps)] for n in splits},
            args.rounds,
            f"{name:18s} devices:",
        )
        for name in args.system
    }
    metrics = {}
    for name, by_split in runs.items():
        one, split = (statistics.median(by_split[str(n)]) for n in splits)
        ratio = split / one
        metrics[name] = {"one_device_step_seconds": one, "split_step_seconds": split, "split_over_one": ratio}
        print(f"{name:18s} {args.devices} devices / 1 = {ratio:.2f} (medians of {args.rounds} processes)")
    results.write(
        RESULTS / "cpu_devices__cpu.json",
        benchmark="cpu_devices",
        devices=args.devices,
        metrics=metrics,
        runs=runs,
        rounds=args.rounds,
        steps=args.steps,
    )


if __name__ == "__main__":
    main()
