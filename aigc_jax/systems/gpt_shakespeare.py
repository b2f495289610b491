"""GPT text generation on Shakespeare (source question 2: train a GPT-2 model on text, then generate).

The whole story of the system: config presets, data (the embedded `shakespeare` works, character or
byte-level BPE tokens), the next-token loss, the train/eval steps and sampling with a KV cache.

Presets:
- `smoke`: seconds, for tests.
- `cpu`: minutes on 2 CPU cores; see experiments/gpt_shakespeare.py for its measured result.
- `full`: nanoGPT's shakespeare_char setting (6 layers, 6 heads, 384 wide, context 256) for an accelerator.
- `gpt2_124m`: GPT-2 small (124,439,808 parameters) on byte-level BPE tokens.
"""

import dataclasses
import functools
import pathlib
from collections.abc import Iterator
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aigc_jax import decoding, host
from aigc_jax.data import catalog, pipeline, text
from aigc_jax.errors import UserError
from aigc_jax.models.gpt import GPT, size_fields
from aigc_jax.systems.base import sample_options, write_texts
from aigc_jax.train import loop, optim
from aigc_jax.train.state import TrainState, gradient_step

NAME = "gpt_shakespeare"
PRESETS = ("smoke", "cpu", "full", "gpt2_124m")


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    config = loop.system_config(NAME, preset, PRESETS)
    config.data = ml_collections.ConfigDict(
        {"name": "shakespeare", "dir": "", "tokenizer": "char", "bpe_vocab_size": 1024}
    )
    config.model = ml_collections.ConfigDict(
        {
            "num_layers": 4,
            "num_heads": 4,
            "embed_dim": 256,
            "max_len": 128,  # context length
            "dropout": 0.0,
            "dtype": "float32",  # compute dtype; bfloat16 on accelerators
            "vocab_size": 0,  # 0: the tokenizer's size
        }
    )
    config.sample = ml_collections.ConfigDict(
        {"prompt": "\n", "num_tokens": 500, "num_samples": 1, "temperature": 0.8, "top_k": 0, "top_p": 1.0}
    )

    if preset == "smoke":
        config.model.update(num_layers=2, num_heads=2, embed_dim=32, max_len=32)
        config.train.update(
            num_steps=20,
            batch_size=8,
            log_every=5,
            eval_every=10,
            eval_batches=2,
            final_eval_batches=4,
            checkpoint_every=10,
        )
        config.optim.update(warmup_steps=5)
        config.sample.num_tokens = 40
    elif preset == "cpu":
        # Ten minutes on 2 cores buys ~6M tokens, so a small model that sees more of them wins: at equal
        # training time, 128 wide beat 192 and 256, 4 layers beat 6, batch 16 beat 8 and 32, and 2 heads
        # run faster than 4 on XLA's CPU attention (sweep in experiments/gpt_shakespeare.py).
        config.model.update(num_heads=2, embed_dim=128)
        config.train.update(
            num_steps=2800, batch_size=16, log_every=50, eval_every=1000, checkpoint_every=1000
        )
        config.optim.update(learning_rate=3e-3, warmup_steps=100)
        # 2 cores as 2 data-parallel devices: the step took 0.81, 0.69, 0.83 and 0.81 of its one-device time
        # in four runs of benchmarks/cpu_devices.py; the same training up to float rounding
        config.mesh.cpu_devices = 2
    elif preset == "full":
        config.model.update(
            num_layers=6, num_heads=6, embed_dim=384, max_len=256, dropout=0.2, dtype="bfloat16"
        )
        config.train.update(
            num_steps=5000, batch_size=64, log_every=100, eval_every=500, checkpoint_every=1000
        )
        config.optim.update(learning_rate=1e-3, warmup_steps=100, b2=0.99)
    elif preset == "gpt2_124m":
        config.data.update(tokenizer="bpe", bpe_vocab_size=50257)
        config.model.update(
            num_layers=12, num_heads=12, embed_dim=768, max_len=1024, dtype="bfloat16", vocab_size=50257
        )
        config.train.update(
            num_steps=5000, batch_size=32, log_every=50, eval_every=500, checkpoint_every=1000
        )
        config.optim.update(learning_rate=6e-4, warmup_steps=200, b2=0.95)
    return config


@dataclasses.dataclass
class GptShakespeare:
    """The `System` for GPT language modelling on a text data set."""

    config: ml_collections.ConfigDict
    tokenizer: text.Tokenizer

    def __post_init__(self) -> None:
        host.keep_freed_memory()  # its train step's scratch outgrows glibc's thread arenas (aigc_jax/host.py)
        m = self.config.model
        vocab_size = m.vocab_size or self.tokenizer.vocab_size
        if vocab_size < self.tokenizer.vocab_size:
            raise UserError(
                f"config.model.vocab_size {vocab_size} is smaller than the tokenizer's "
                f"{self.tokenizer.vocab_size}; raise it or set it to 0 (the tokenizer's size)"
            )
        self.model = GPT(vocab_size=vocab_size, **size_fields(m))
        self.tx, self.schedule = optim.make_optimizer(self.config.optim, self.config.train.num_steps)

    # --- model and steps -------------------------------------------------------------------------

    def init_variables(self, rng: jax.Array) -> dict[str, Any]:
        return self.model.init(rng, jnp.zeros((1, self.config.model.max_len), jnp.int32))

    def train_step(
        self, state: TrainState, batch: dict[str, jax.Array]
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        def loss_fn(params: Any, dropout_rng: jax.Array) -> tuple[jax.Array, dict[str, Any]]:
            logits_BTV = self.model.apply(
                {"params": params}, batch["inputs"], train=True, rngs={"dropout": dropout_rng}
            )
            return optax.softmax_cross_entropy_with_integer_labels(logits_BTV, batch["targets"]).mean(), {}

        return gradient_step(state, loss_fn)

    def eval_step(self, state: TrainState, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        logits_BTV = self.model.apply({"params": state.params}, batch["inputs"])
        nll_BT = optax.softmax_cross_entropy_with_integer_labels(logits_BTV, batch["targets"])
        return {"nll": jnp.sum(nll_BT * batch["weights"]), "weight": jnp.sum(batch["weights"])}

    def summarize_eval(self, totals: dict[str, np.ndarray]) -> dict[str, float]:
        loss = float(totals["nll"] / totals["weight"])
        # nats per character makes char and BPE runs comparable (exact when the whole split is read)
        return {
            "loss": loss,
            "perplexity": float(np.exp(loss)),
            "nats_per_char": loss * self._tokens_per_char,
        }

    def count_items(self, batch: dict[str, np.ndarray]) -> int:
        return int(batch["inputs"].size)

    # --- data ------------------------------------------------------------------------------------

    @functools.cached_property
    def _train_tokens(self) -> np.ndarray:
        return self.tokenizer.encode(corpus(self.config.data, "train"))

    @functools.cached_property
    def _eval_text(self) -> str:
        return corpus(self.config.data, "validation")

    @functools.cached_property
    def _eval_tokens(self) -> np.ndarray:
        return self.tokenizer.encode(self._eval_text)

    @property
    def _tokens_per_char(self) -> float:
        return len(self._eval_tokens) / max(len(self._eval_text), 1)

    def train_dataset(self) -> grain.IterDataset:
        c = self.config
        return pipeline.lm_train_dataset(
            self._train_tokens, c.model.max_len, c.train.batch_size, c.train.seed
        )

    def eval_batches(self, max_batches: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        c = self.config
        return pipeline.lm_eval_batches(self._eval_tokens, c.model.max_len, c.train.batch_size, max_batches)

    # --- sampling --------------------------------------------------------------------------------

    def sample(self, state: TrainState, rng: jax.Array, **options: Any) -> list[str]:
        """Continuations of `prompt`; options override `config.sample` (prompt, num_tokens, ...)."""
        o = sample_options(self.config.sample, options)
        prompt_P = self.tokenizer.encode(o["prompt"])
        if len(prompt_P) == 0:
            raise UserError("the prompt is empty after tokenization; give at least one character")
        prompt_BP = np.tile(prompt_P, (o["num_samples"], 1))
        tokens_BS = decoding.generate(
            self.model.clone(decode=True),
            state.params,
            prompt_BP,
            rng,
            num_new=o["num_tokens"],
            temperature=float(o["temperature"]),
            top_k=int(o["top_k"]),
            top_p=float(o["top_p"]),
        )
        return [self.tokenizer.decode(row) for row in np.asarray(tokens_BS)]

    def write_samples(self, outputs: list[str], directory: pathlib.Path, name: str) -> list[pathlib.Path]:
        return write_texts(outputs, directory, name)


def corpus(data_config: ml_collections.ConfigDict, split: str) -> str:
    """All documents of a split, one text: works are separated by blank lines."""
    documents = catalog.documents(data_config.name, split, data_config.dir or None)
    return "\n\n".join(body for _, body in documents)


def build(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> GptShakespeare:
    """The system for `config`; its tokenizer is fitted on the training split once and kept in `workdir`."""
    d = config.data
    tokenizer = text.workdir_tokenizer(
        workdir, d.tokenizer, lambda: text.build_tokenizer(d.tokenizer, corpus(d, "train"), d.bpe_vocab_size)
    )
    return GptShakespeare(config, tokenizer)
