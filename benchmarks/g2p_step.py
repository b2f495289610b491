"""JAX train-step time of transformer_g2p against the same encoder-decoder in PyTorch (eager) on this CPU.

    python benchmarks/g2p_step.py [--preset cpu] [--turns 5] [--steps-per-turn 8] [--processes 3]

Both sides: the preset's model and batch of words at the longest length bucket (16 letters in, 16 phoneme ids
out), the same random batch with padding (word and pronunciation lengths drawn from 3 to 16), label- smoothed
cross-entropy over the non-padding targets, AdamW with the same hyper-parameters and global-norm clipping,
float32 and no dropout (whatever the preset says), all cores of this machine. JAX runs the system's own jitted
`train_step` (the code `aigc-jax train` runs; building the system sets glibc to keep freed memory,
aigc_jax/host.py, for the PyTorch steps in this process too); PyTorch runs benchmarks/torch_transformer.py.
Asserts equal parameter counts. Turns of 8 steps alternate JAX / PyTorch (`common.alternate`); medians after
warm-up, over the steps of `--processes` fresh processes (`common.pooled_processes`). Writes
benchmarks/results/transformer_g2p_step__<preset>.json with both times and `jax_over_torch` (target ≤ 1.0).
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
from torch_transformer import TorchTransformer, param_count

from aigc_jax.systems import transformer_g2p

PHONEMES = transformer_g2p.Phonemes([f"P{i}" for i in range(39)])  # the stress-free inventory's size


def random_batch(batch_size: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Letters and phoneme ids with padding after random lengths, as `pair_arrays` lays them out."""
    rng = np.random.default_rng(seed)
    positions_BT = np.arange(length)[None, :]
    source_BT = rng.integers(1, len(transformer_g2p.LETTERS) + 1, (batch_size, length))
    source_BT = np.where(positions_BT < rng.integers(3, length + 1, (batch_size, 1)), source_BT, 0)
    phonemes_BT = rng.integers(3, PHONEMES.vocab_size, (batch_size, length))
    phoneme_lengths_B1 = rng.integers(3, length, (batch_size, 1))
    targets_BT = np.where(positions_BT < phoneme_lengths_B1, phonemes_BT, 0)
    targets_BT[np.arange(batch_size), phoneme_lengths_B1[:, 0]] = transformer_g2p.EOS_ID
    inputs_BT = np.concatenate([np.full((batch_size, 1), transformer_g2p.BOS_ID), targets_BT[:, :-1]], axis=1)
    inputs_BT = np.where(inputs_BT == transformer_g2p.EOS_ID, 0, inputs_BT)
    batch = {"source": source_BT, "inputs": inputs_BT, "targets": targets_BT}
    return {key: value.astype(np.int32) for key, value in batch.items()}


def torch_step(system: transformer_g2p.TransformerG2p, batch: dict[str, np.ndarray]):
    m, o = system.config.model, system.config.optim
    torch.manual_seed(0)
    device = torch_device()
    model = TorchTransformer(
        len(transformer_g2p.LETTERS) + 1,
        PHONEMES.vocab_size,
        m.num_layers,
        m.num_heads,
        m.embed_dim,
        m.max_len,
    ).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=o.learning_rate, betas=(o.b1, o.b2), weight_decay=o.weight_decay
    )
    source, inputs, targets = (
        torch.from_numpy(batch[k]).long().to(device) for k in ("source", "inputs", "targets")
    )
    smoothing = system.config.train.label_smoothing

    def run() -> None:
        logits = model(source, inputs)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            targets.reshape(-1),
            ignore_index=0,
            label_smoothing=smoothing,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip_norm)
        optimizer.step()

    return torch_synchronized(run, device), param_count(model)


def setup(preset: str) -> tuple[transformer_g2p.TransformerG2p, dict[str, np.ndarray]]:
    """The system both sides mirror (float32, no dropout, as the PyTorch side runs) and its batch."""
    config = transformer_g2p.get_config(preset)
    config.model.update(dtype="float32", dropout=0.0)
    system = transformer_g2p.TransformerG2p(config, PHONEMES)
    return system, random_batch(config.train.batch_size, config.data.length_buckets[-1])


def measure(args: argparse.Namespace) -> dict[str, Any]:
    system, batch = setup(args.preset)
    config = system.config
    B, T = batch["source"].shape
    run_jax, jax_params = jax_train_step(system, batch)
    run_torch, torch_params = torch_step(system, batch)
    assert jax_params == torch_params, f"parameter counts differ: jax {jax_params}, torch {torch_params}"
    times = alternate(
        {"jax": run_jax, "torch": run_torch}, repeats=args.turns, steps_per_turn=args.steps_per_turn
    )
    m = config.model
    shape = (
        f"{m.num_layers}+{m.num_layers} layers, {m.num_heads} heads, {m.embed_dim} wide, "
        f"{B} words x {T} tokens, {jax_params:,} parameters"
    )
    return {"times": times, "shape": shape, "extra": {"parameters": jax_params}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", choices=transformer_g2p.PRESETS)
    add_turn_options(parser, turns=5)
    args = parser.parse_args()
    run_step_benchmark(__file__, "transformer_g2p_step", args, lambda: measure(args))


if __name__ == "__main__":
    main()
