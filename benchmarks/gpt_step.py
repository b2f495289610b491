"""JAX train-step time of gpt_shakespeare against the same architecture in PyTorch (eager) on this CPU.

    python benchmarks/gpt_step.py [--preset cpu] [--turns 5] [--steps-per-turn 8] [--processes 3]

Both sides: same shapes (the preset's model, batch and context), AdamW with the same hyper-parameters and
global-norm clipping, float32 and no dropout (whatever the preset says), all cores of this machine. JAX runs
the system's own jitted `train_step` (the code `aigc-jax train` runs); building the system sets glibc to keep
freed memory (aigc_jax/host.py), for the PyTorch steps in this process too. Turns of 8 steps alternate JAX /
PyTorch (`common.alternate`); medians after warm-up, over the steps of `--processes` fresh processes
(`common.pooled_processes`). Writes benchmarks/results/gpt_step__<preset>.json with both times and
`jax_over_torch` (target ≤ 1.0).
"""

import argparse
from typing import Any

import numpy as np
import torch
from common import (
    add_turn_options,
    alternate,
    jax_train_step,
    run_step_benchmark,
    torch_device,
    torch_synchronized,
)
from torch_gpt import TorchGPT

from aigc_jax.data import text
from aigc_jax.systems import gpt_shakespeare

VOCAB = "".join(chr(c) for c in range(32, 117))  # 85 characters, about the corpus's alphabet


def jax_step(config, tokens: np.ndarray):
    system = gpt_shakespeare.GptShakespeare(config, text.build_tokenizer("char", VOCAB))
    return jax_train_step(system, {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]})[0]


def torch_step(config, tokens: np.ndarray, vocab_size: int):
    m, o = config.model, config.optim
    torch.manual_seed(0)
    device = torch_device()
    model = TorchGPT(vocab_size, m.num_layers, m.num_heads, m.embed_dim, m.max_len).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=o.learning_rate, betas=(o.b1, o.b2), weight_decay=o.weight_decay
    )
    inputs = torch.from_numpy(tokens[:, :-1]).long().to(device)
    targets = torch.from_numpy(tokens[:, 1:]).long().to(device)

    def run() -> None:
        logits = model(inputs)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab_size), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip_norm)
        optimizer.step()

    return torch_synchronized(run, device)


def setup(preset: str) -> tuple[Any, np.ndarray]:
    """The config both sides mirror (float32, no dropout, as the PyTorch side runs) and a batch of
    random tokens, one longer than the context (inputs and shifted targets)."""
    config = gpt_shakespeare.get_config(preset)
    config.model.vocab_size = len(VOCAB) + 1  # + the unknown-character id
    config.model.update(dtype="float32", dropout=0.0)
    B, T = config.train.batch_size, config.model.max_len
    tokens = np.random.default_rng(0).integers(0, config.model.vocab_size, (B, T + 1)).astype(np.int32)
    return config, tokens


def measure(args: argparse.Namespace) -> dict[str, Any]:
    config, tokens = setup(args.preset)
    B, T = config.train.batch_size, config.model.max_len
    times = alternate(
        {"jax": jax_step(config, tokens), "torch": torch_step(config, tokens, config.model.vocab_size)},
        repeats=args.turns,
        steps_per_turn=args.steps_per_turn,
    )
    m = config.model
    shape = f"{m.num_layers} layers, {m.num_heads} heads, {m.embed_dim} wide, context {T}, batch {B}"
    return {"times": times, "shape": shape, "extra": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", choices=("smoke", "cpu", "full"))
    add_turn_options(parser, turns=5)
    args = parser.parse_args()
    run_step_benchmark(__file__, "gpt_step", args, lambda: measure(args))


if __name__ == "__main__":
    main()
