"""JAX train-step time of the convolutional image systems against the same architectures in PyTorch (eager)
on this CPU.

    python benchmarks/image_steps.py [--system cnn_fashion|dcgan_fashion|all] [--turns 8] [--steps-per-turn 8]
                                     [--processes 3]

Each system is built from its `cpu` preset; both sides take the same real training batch (one batch of
`system.train_dataset()`, NHWC for JAX, NCHW for PyTorch), float32, all cores of this machine. JAX runs
the system's own jitted `train_step` (the code `aigc-jax train` runs); PyTorch runs the same
architecture (benchmarks/torch_convnets.py) through the same update:

- cnn_fashion: cross-entropy, dropout and BatchNorm in train mode, AdamW with weight decay on the conv
  and dense kernels only (ndim ≥ 2), no clipping.
- dcgan_fashion: one discriminator Adam update on real images and detached fakes (two separate D calls,
  BCE-with-logits), then one generator Adam update with fresh noise and the non-saturating loss through
  the updated discriminator (whose parameters need no gradients there); Adam 2e-4, betas (0.5, 0.999).

Turns of 8 consecutive steps alternate JAX / PyTorch (`common.alternate`: one-for-one alternation slowed both
sides, since each step then starts right after the other framework's); medians after warm-up, over the steps
of `--processes` fresh processes run one after another (`common.pooled_processes`: a JAX process's step time
depends on the process, so one can misstate the ratio by a third). Asserts that the two sides have the same
parameter counts, and writes benchmarks/results/<system>_step__cpu.json with both times, each process's ratio
and `jax_over_torch` (target ≤ 1.0).
"""

import argparse
import json
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from common import (
    add_turn_options,
    alternate,
    jax_train_step,
    pooled_processes,
    report_step_ratio,
    torch_device,
    torch_synchronized,
)
from torch_convnets import TorchDcganDiscriminator, TorchDcganGenerator, TorchVggBnCNN, param_count

from aigc_jax.systems import cnn_fashion, dcgan_fashion

SYSTEMS = {"cnn_fashion": cnn_fashion, "dcgan_fashion": dcgan_fashion}
PRESET = "cpu"


def torch_cnn_step(
    config: Any, num_classes: int, batch: dict[str, np.ndarray]
) -> tuple[Callable[[], None], int]:
    m, o = config.model, config.optim
    torch.manual_seed(0)
    image_shape = batch["image"].shape[1:]
    device = torch_device()
    model = TorchVggBnCNN(num_classes, m.stage_features, m.stage_convs, m.hidden, m.dropout, image_shape)
    model.to(device).train()
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": o.weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=o.learning_rate,
        betas=(o.b1, o.b2),
    )
    images = torch.from_numpy(np.ascontiguousarray(batch["image"].transpose(0, 3, 1, 2))).to(device)
    labels = torch.from_numpy(batch["label"]).long().to(device)

    def run() -> None:
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return torch_synchronized(run, device), param_count(model)


def torch_gan_step(config: Any, batch: dict[str, np.ndarray]) -> tuple[Callable[[], None], int]:
    m, o = config.model, config.optim
    torch.manual_seed(0)
    image_shape = batch["image"].shape[1:]
    device = torch_device()
    generator = TorchDcganGenerator(m.noise_dim, m.width, image_shape, m.generator_quarter_convs)
    discriminator = TorchDcganDiscriminator(m.width, image_shape, m.discriminator_quarter_convs)
    generator, discriminator = generator.to(device).train(), discriminator.to(device).train()
    g_opt = torch.optim.Adam(generator.parameters(), lr=o.learning_rate, betas=(o.b1, o.b2))
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=o.learning_rate, betas=(o.b1, o.b2))
    real = torch.from_numpy(np.ascontiguousarray(batch["image"].transpose(0, 3, 1, 2))).to(device)
    B = real.shape[0]
    ones, zeros = torch.ones(B, device=device), torch.zeros(B, device=device)
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def run() -> None:
        # 1. discriminator, on real images and fakes of a generator held fixed (BN in train mode)
        with torch.no_grad():
            fakes = generator(torch.randn(B, m.noise_dim, device=device))
        d_loss = bce(discriminator(real), ones) + bce(discriminator(fakes), zeros)
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        # 2. generator, fresh noise, non-saturating loss through the updated discriminator
        discriminator.requires_grad_(False)
        g_loss = bce(discriminator(generator(torch.randn(B, m.noise_dim, device=device))), ones)
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
        discriminator.requires_grad_(True)

    return torch_synchronized(run, device), param_count(generator) + param_count(discriminator)


def setup(name: str) -> tuple[Any, Any, dict[str, np.ndarray]]:
    """The system's `cpu` config, the system, and one real training batch."""
    config = SYSTEMS[name].get_config(PRESET)
    with tempfile.TemporaryDirectory() as workdir:
        system = SYSTEMS[name].build(config, workdir)
        batch = dict(next(iter(system.train_dataset())))
    return config, system, batch


def measure(name: str, turns: int, steps_per_turn: int) -> dict[str, Any]:
    """In this process: `turns` alternating turns of `steps_per_turn` JAX, then PyTorch, steps of `name`,
    and what was measured."""
    config, system, batch = setup(name)
    image_shape = tuple(batch["image"].shape[1:])
    B = batch["image"].shape[0]
    jax_run, jax_count = jax_train_step(system, batch)
    if name == "cnn_fashion":
        torch_run, torch_count = torch_cnn_step(config, system.data.num_classes, batch)
        m = config.model
        shape = (
            f"VGG-BN stages {tuple(m.stage_features)} x {tuple(m.stage_convs)} convs, hidden {m.hidden}, "
            f"images {'x'.join(map(str, image_shape))}, batch {B}"
        )
    else:
        torch_run, torch_count = torch_gan_step(config, batch)
        shape = (
            f"DCGAN width {config.model.width}, noise {config.model.noise_dim}, "
            f"images {'x'.join(map(str, image_shape))}, batch {B}"
        )
    assert jax_count == torch_count, f"{name}: {jax_count:,} JAX parameters but {torch_count:,} in PyTorch"
    times = alternate({"jax": jax_run, "torch": torch_run}, repeats=turns, steps_per_turn=steps_per_turn)
    return {"times": times, "shape": f"{shape}; {jax_count:,} params", "param_count": jax_count}


def benchmark(name: str, turns: int, steps_per_turn: int, processes: int) -> None:
    """`measure` in `processes` fresh processes, one after another; reports their steps pooled."""
    child_args = ["--system", name, "--turns", str(turns), "--steps-per-turn", str(steps_per_turn)]
    times, first, process_ratios = pooled_processes(__file__, child_args, processes, name)
    count = first["param_count"]
    report_step_ratio(
        f"{name}_step",
        PRESET,
        first["shape"],
        times,
        param_counts={"jax": count, "torch": count},
        processes=processes,
        process_ratios=process_ratios,
        steps_per_turn=steps_per_turn,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="all", choices=(*SYSTEMS, "all"))
    add_turn_options(parser, turns=8)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.system, args.turns, args.steps_per_turn)))
        return
    for name in SYSTEMS if args.system == "all" else (args.system,):
        benchmark(name, args.turns, args.steps_per_turn, args.processes)


if __name__ == "__main__":
    main()
