"""JAX train-step time of textcnn_reviews against the same network in PyTorch (eager) on this CPU.

    python benchmarks/textcnn_step.py [--preset cpu] [--length 32] [--turns 5] [--steps-per-turn 8]
                                      [--processes 3]

Both sides: Kim's CNN-rand of the preset (300-d embeddings of an 18,000-word vocabulary, widths 3/4/5 x 100
maps, dropout 0.5, max-norm 3 on the output weights after each update), batches of the preset's size (50) of
`--length` word ids with random sentence lengths, Adam with the preset's learning rate, float32, all cores of
this machine. 32 is a typical padded length of the length-bucketed training batches. JAX runs the system's own
jitted `train_step`; PyTorch runs nn.Conv1d. Parameter counts are asserted equal. Turns of 8 steps alternate
JAX / PyTorch (`common.alternate`); medians after warm-up, over the steps of `--processes` fresh processes
(`common.pooled_processes`). Writes benchmarks/results/textcnn_reviews_step__<preset>.json with both times and
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
from torch_textcnn import TorchTextCNN

from aigc_jax.data import text
from aigc_jax.systems import textcnn_reviews

VOCAB_SIZE = 18_000  # about the vocabulary of nine folds of the sentences


def jax_step(config, batch: dict[str, np.ndarray]):
    words = [f"w{i}" for i in range(VOCAB_SIZE - 2)]
    return jax_train_step(textcnn_reviews.TextCnnReviews(config, text.WordTokenizer(words)), batch)


def torch_step(config, batch: dict[str, np.ndarray]):
    m, o = config.model, config.optim
    torch.manual_seed(0)
    device = torch_device()
    model = TorchTextCNN(2, VOCAB_SIZE, m.embed_dim, tuple(m.widths), m.features, m.dropout).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=o.learning_rate, betas=(o.b1, o.b2))
    tokens = torch.from_numpy(batch["tokens"]).long().to(device)
    labels = torch.from_numpy(batch["label"]).long().to(device)

    def run() -> None:
        loss = torch.nn.functional.cross_entropy(model(tokens), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.max_norm_(m.max_norm)

    return torch_synchronized(run, device), sum(p.numel() for p in model.parameters())


def measure(args: argparse.Namespace) -> dict[str, Any]:
    config = textcnn_reviews.get_config(args.preset)
    config.data.max_len = args.length  # the model's example length; no data set is read
    config.optim.weight_decay = 0.0  # as the preset (AdamW without decay is Adam); asserted below
    B, L = config.train.batch_size, args.length
    rng = np.random.default_rng(0)
    lengths = rng.integers(L // 2, L + 1, B)
    tokens = np.where(np.arange(L) < lengths[:, None], rng.integers(2, VOCAB_SIZE, (B, L)), 0).astype(
        np.int32
    )
    batch = {"tokens": tokens, "label": rng.integers(0, 2, B).astype(np.int32)}
    (run_jax, jax_count), (run_torch, torch_count) = jax_step(config, batch), torch_step(config, batch)
    assert jax_count == torch_count, (jax_count, torch_count)
    assert config.optim.name == "adamw" and config.optim.grad_clip_norm == 0.0
    times = alternate(
        {"jax": run_jax, "torch": run_torch}, repeats=args.turns, steps_per_turn=args.steps_per_turn
    )
    m = config.model
    shape = f"embed {m.embed_dim}, widths {tuple(m.widths)} x {m.features}, vocab {VOCAB_SIZE}, "
    shape += f"batch {B}, length {L}"
    return {"times": times, "shape": shape, "extra": {"parameters": jax_count}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", choices=textcnn_reviews.PRESETS)
    parser.add_argument("--length", type=int, default=32)
    add_turn_options(parser, turns=5)
    args = parser.parse_args()
    run_step_benchmark(__file__, "textcnn_reviews_step", args, lambda: measure(args))


if __name__ == "__main__":
    main()
