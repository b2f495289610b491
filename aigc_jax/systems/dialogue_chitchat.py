"""A transformer dialogue model on chit-chat conversations (source question 17: a dialogue system).

The source's snippet fine-tunes BERT, an encoder, as a reply generator; what works is a decoder-only
transformer (the platform's GPT) that reads the conversation so far and writes the next turn.

The whole story of the system: config presets, data (the embedded `chitchat` pairs, byte-level BPE
tokens), the loss, the train/eval steps, and replies by top-p sampling or beam search.

Layout. A turn is one line, and the newline token is the end-of-turn mark. Each example is one row of
`max_len` tokens: a context region of `max_len - response_tokens` holding the last `context_turns`
turns, each followed by end-of-turn, *left*-padded with a padding id the tokenizer never produces (a
longer context loses its oldest tokens); then the response and its end-of-turn, right-padded.
The response thus always starts at the same position, so replies to contexts of any length decode as
one batch from one fixed-shape prompt, with no attention mask: the model learns to read past padding
because every training row has it where every prompt has it. The loss covers the response tokens and
their end-of-turn and, with `data.context_loss` (the default), the context's tokens too: like DialoGPT,
the model learns the language of the whole conversation, so each row teaches it more tokens. Evaluation
always scores the response alone.

`data.use_context=false` is the no-context ablation: the same model, trained and evaluated with the
context region holding nothing but padding and the previous turn's end-of-turn. Both variants predict
the very same tokens (responses are cut to the same length), so their perplexities compare directly;
a lower perplexity with context is evidence the model uses the conversation. Since the context run also
learns from its context tokens, `data.eval_context=shuffled` gives the cleaner probe: the same trained
model scoring each response after another conversation's context.

Presets:
- `smoke`: seconds, on a slice of the data, for tests.
- `cpu`: 4 layers x 128 wide, rows of 80 context + 48 response tokens, 1,000 steps of 32 pairs;
  experiments/dialogue_chitchat.py trains it with and without context and records both perplexities.
- `full`: 6 layers x 384, a longer context, for an accelerator.
"""

import dataclasses
import functools
import pathlib
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aigc_jax import decoding, host
from aigc_jax.data import catalog, in_memory, text
from aigc_jax.errors import UserError
from aigc_jax.models.gpt import GPT, size_fields
from aigc_jax.systems.base import sample_options, write_texts
from aigc_jax.train import loop, optim
from aigc_jax.train.state import TrainState, gradient_step

NAME = "dialogue_chitchat"
PRESETS = ("smoke", "cpu", "full")
END_OF_TURN = "\n"
EVAL_CONTEXTS = ("own", "shuffled")


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    config = loop.system_config(NAME, preset, PRESETS)
    config.data = ml_collections.ConfigDict(
        {
            "name": "chitchat",
            "dir": "",
            "train_split": "train",  # TFDS slices work, e.g. train[:2000]
            "eval_split": "validation",
            "tokenizer": "bpe",
            "bpe_vocab_size": 2048,
            "use_context": True,  # False: the no-context ablation (the response alone)
            "context_turns": 4,  # the most recent turns read (the data set keeps up to 8)
            "response_tokens": 48,  # the response region, end-of-turn included; longer responses are cut
            "context_loss": True,  # train on the context tokens too (DialoGPT), not only on the response
            # "shuffled": evaluate each response after another conversation's context (a probe of how
            # much the model's predictions depend on the right conversation)
            "eval_context": "own",
        }
    )
    config.model = ml_collections.ConfigDict(
        {
            "num_layers": 4,
            "num_heads": 2,
            "embed_dim": 128,
            "max_len": 128,  # context region + response region
            "dropout": 0.0,
            "dtype": "float32",  # compute dtype; bfloat16 on accelerators
        }
    )
    config.sample = ml_collections.ConfigDict(
        {
            "context": "hi! how are you doing today?",  # previous turns, one per line
            "num_samples": 1,
            "temperature": 1.0,
            "top_k": 0,
            "top_p": 0.9,
            "beam_size": 0,  # > 0: beam search (deterministic) instead of sampling
            "length_alpha": 0.6,  # beam search's GNMT length penalty
        }
    )
    config.train.update(batch_size=32, eval_batches=20)
    config.optim.update(learning_rate=2e-3)

    if preset == "smoke":
        config.data.update(
            train_split="train[:2000]", eval_split="validation[:64]", bpe_vocab_size=300, response_tokens=16
        )
        config.model.update(num_layers=1, num_heads=2, embed_dim=32, max_len=48)
        config.train.update(
            num_steps=20,
            batch_size=16,
            log_every=5,
            eval_every=10,
            eval_batches=2,
            checkpoint_every=10,
        )
        config.optim.update(warmup_steps=5)
    elif preset == "cpu":
        # A turn is often several messages: validation responses have a median of 20 tokens, and 86% fit
        # whole in the 48-token response region; 80 context tokens hold the last 3-4 turns.
        config.train.update(num_steps=1000, log_every=50, eval_every=500, checkpoint_every=500)
        config.optim.update(learning_rate=3e-3, warmup_steps=100)
        # the 2 cores as 2 data-parallel devices: the step took 0.84, 0.86 and 0.82 of its one-device time
        # (benchmarks/results/cpu_devices__cpu.json); the same training up to float rounding
        config.mesh.cpu_devices = 2
    elif preset == "full":
        config.data.update(context_turns=8, bpe_vocab_size=8192, response_tokens=64)
        config.model.update(
            num_layers=6, num_heads=6, embed_dim=384, max_len=256, dropout=0.1, dtype="bfloat16"
        )
        config.train.update(
            num_steps=20000, batch_size=64, log_every=100, eval_every=2000, checkpoint_every=2000
        )
        config.optim.update(learning_rate=1e-3, warmup_steps=500)
    return config


def turn_lines(raw: str) -> list[str]:
    """Turns as the data set stores them: one line each, whitespace normalised, empty lines dropped."""
    return [" ".join(line.split()) for line in raw.split("\n") if line.strip()]


def target_weights(
    tokens_BT: jax.Array,
    response_length_B: jax.Array,
    context_len: int,
    pad_id: int,
    *,
    include_context: bool = False,
) -> jax.Array:
    """Which next-token predictions count, `[B, T]` bools: position `t` predicts token `t + 1`.

    Always the response tokens and their end-of-turn (tokens `context_len ...`, `response_length` of
    them; rows with `response_length` 0, eval padding, count nothing). With `include_context`, also
    every context token that follows another context token, so the model learns the conversation's
    language from the whole row, as DialoGPT does; padding is never a target and never predicts one.
    """
    t_T = jnp.arange(tokens_BT.shape[1])
    weights_BT = (t_T >= context_len - 1) & (t_T < context_len - 1 + response_length_B[:, None])
    if include_context:
        next_BT = jnp.roll(tokens_BT, -1, axis=1)
        weights_BT |= (t_T < context_len - 1) & (tokens_BT != pad_id) & (next_BT != pad_id)
    return weights_BT


def next_token_nll(
    logits_BTV: jax.Array, tokens_BT: jax.Array, weights_BT: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Negative log-likelihood of each next token, summed where `weights_BT`, and how many that is."""
    targets_BT = jnp.roll(tokens_BT, -1, axis=1)  # the last position's target wraps round: never weighted
    nll_BT = optax.softmax_cross_entropy_with_integer_labels(logits_BTV, targets_BT)
    return jnp.sum(jnp.where(weights_BT, nll_BT, 0.0)), jnp.sum(weights_BT).astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("model", "beam_size", "max_new", "eos_id", "length_alpha"))
def beam_replies(
    model: GPT,
    params: Any,
    prompt_BC: jax.Array,
    *,
    beam_size: int,
    max_new: int,
    eos_id: int,
    length_alpha: float,
) -> jax.Array:
    """The best beam's reply to each prompt, `[B, max_new]` (padded with `eos_id` after its end)."""
    first_logits_BV, cache = decoding.prefill(model, params, prompt_BC)
    tokens_BKN, _ = decoding.beam_search(
        decoding.cached_step_fn(model, params),
        cache,
        first_logits_BV,
        beam_size=beam_size,
        max_new=max_new,
        eos_id=eos_id,
        length_alpha=length_alpha,
    )
    return tokens_BKN[:, 0]


@dataclasses.dataclass
class DialogueChitchat:
    """The `System` for next-turn generation from the previous turns of a conversation."""

    config: ml_collections.ConfigDict
    tokenizer: text.Tokenizer

    def __post_init__(self) -> None:
        host.keep_freed_memory()  # its train step's scratch outgrows glibc's thread arenas (aigc_jax/host.py)
        d, m = self.config.data, self.config.model
        self.context_len = m.max_len - d.response_tokens
        if d.response_tokens < 2 or self.context_len < 1:
            raise UserError(
                f"config.data.response_tokens {d.response_tokens} must be at least 2 and leave room for "
                f"context in config.model.max_len {m.max_len}; lower it or raise max_len"
            )
        if d.eval_context not in EVAL_CONTEXTS:
            raise UserError(f"config.data.eval_context {d.eval_context!r} must be one of {EVAL_CONTEXTS}")
        eot = self.tokenizer.encode(END_OF_TURN)
        if len(eot) != 1:
            raise UserError(f"the {d.tokenizer} tokenizer does not encode a newline as one token")
        self.eot_id = int(eot[0])
        self.pad_id = self.tokenizer.vocab_size  # one id past the tokenizer's: no text encodes to it
        self.model = GPT(vocab_size=self.tokenizer.vocab_size + 1, **size_fields(m))
        self.tx, self.schedule = optim.make_optimizer(self.config.optim, self.config.train.num_steps)

    # --- model and steps -------------------------------------------------------------------------

    def init_variables(self, rng: jax.Array) -> dict[str, Any]:
        return self.model.init(rng, jnp.zeros((1, self.config.model.max_len), jnp.int32))

    def train_step(
        self, state: TrainState, batch: dict[str, jax.Array]
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        def loss_fn(params: Any, dropout_rng: jax.Array) -> tuple[jax.Array, dict[str, Any]]:
            logits_BTV = self.model.apply(
                {"params": params}, batch["tokens"], train=True, rngs={"dropout": dropout_rng}
            )
            weights_BT = self.weights(batch, include_context=self.config.data.context_loss)
            nll, count = next_token_nll(logits_BTV, batch["tokens"], weights_BT)
            return nll / jnp.maximum(count, 1.0), {}

        return gradient_step(state, loss_fn)

    def weights(self, batch: dict[str, jax.Array], include_context: bool = False) -> jax.Array:
        return target_weights(
            batch["tokens"],
            batch["response_length"],
            self.context_len,
            self.pad_id,
            include_context=include_context,
        )

    def eval_step(self, state: TrainState, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        # the padding rows of the last batch are all zeros, response_length included, so they count 0
        logits_BTV = self.model.apply({"params": state.params}, batch["tokens"])
        nll, count = next_token_nll(logits_BTV, batch["tokens"], self.weights(batch))
        return {"nll": nll, "weight": count}

    def summarize_eval(self, totals: dict[str, np.ndarray]) -> dict[str, float]:
        loss = float(totals["nll"] / totals["weight"])
        # `tokens` lets two runs check they scored the same response tokens
        return {"loss": loss, "perplexity": float(np.exp(loss)), "tokens": float(totals["weight"])}

    def count_items(self, batch: dict[str, np.ndarray]) -> int:
        return int(batch["tokens"].size)

    # --- data ------------------------------------------------------------------------------------

    def context_row(self, turns_ids: Sequence[np.ndarray]) -> np.ndarray:
        """The context region `[context_len]`: the last `context_turns` turns, each ended by end-of-turn,
        left-padded; without context, only the previous turn's end-of-turn."""
        d = self.config.data
        eot = np.array([self.eot_id], np.int32)
        recent = turns_ids[-d.context_turns :] if d.use_context and d.context_turns > 0 else []
        ids = np.concatenate([part for ids in recent for part in (ids, eot)] or [eot])[-self.context_len :]
        return np.concatenate([np.full(self.context_len - len(ids), self.pad_id, np.int32), ids])

    def encode_turns(self, turns: Sequence[str]) -> list[np.ndarray]:
        """Token ids of each turn, all encoded in one call (a turn holds no newline, so the end-of-turn
        ids between them mark exactly where each turn's ids end)."""
        ids = self.tokenizer.encode("".join(turn + END_OF_TURN for turn in turns))
        ends = np.flatnonzero(ids == self.eot_id)
        assert len(ends) == len(turns), f"{len(turns)} turns gave {len(ends)} end-of-turn tokens"
        return [part[:-1] for part in np.split(ids, ends + 1)[:-1]]

    def examples(self, split: str) -> dict[str, np.ndarray]:
        """A split as arrays: `tokens` int32 `[N, max_len]` and `response_length` int32 `[N]` (its
        response tokens plus end-of-turn, cut to `response_tokens`)."""
        records = catalog.records(self.config.data.name, split, self.config.data.dir or None)
        if not records:
            raise UserError(f"split {split!r} of {self.config.data.name} is empty; choose another split")
        contexts = [record["context"].split(END_OF_TURN) for record in records]
        distinct = sorted({turn for turns in contexts for turn in turns} | {r["response"] for r in records})
        ids_of = dict(zip(distinct, self.encode_turns(distinct), strict=True))
        R = self.config.data.response_tokens
        tokens = np.full((len(records), self.config.model.max_len), self.pad_id, np.int32)
        response_length = np.zeros(len(records), np.int32)
        for i, (record, turns) in enumerate(zip(records, contexts, strict=True)):
            response = np.append(ids_of[record["response"]][: R - 1], self.eot_id)
            tokens[i, : self.context_len] = self.context_row([ids_of[turn] for turn in turns])
            tokens[i, self.context_len : self.context_len + len(response)] = response
            response_length[i] = len(response)
        return {"tokens": tokens, "response_length": response_length}

    @functools.cached_property
    def _train_examples(self) -> dict[str, np.ndarray]:
        return self.examples(self.config.data.train_split)

    @functools.cached_property
    def _eval_examples(self) -> dict[str, np.ndarray]:
        examples = self.examples(self.config.data.eval_split)
        if self.config.data.eval_context == "shuffled":
            # the context of the example half the split away: another conversation, never the own one
            tokens = examples["tokens"].copy()
            tokens[:, : self.context_len] = np.roll(tokens[:, : self.context_len], len(tokens) // 2, axis=0)
            examples = {**examples, "tokens": tokens}
        return examples

    def train_dataset(self) -> grain.IterDataset:
        c = self.config
        return in_memory.train_dataset(self._train_examples, c.train.batch_size, c.train.seed)

    def eval_batches(self, max_batches: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        return in_memory.eval_batches(self._eval_examples, self.config.train.batch_size, max_batches)

    # --- replies ---------------------------------------------------------------------------------

    def reply(
        self,
        state: TrainState,
        rng: jax.Array,
        conversations: Sequence[Sequence[str]],
        *,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 0.9,
        beam_size: int = 0,
        length_alpha: float = 0.6,
    ) -> list[str]:
        """The next turn of each conversation (its turns so far, oldest first), all decoded as one batch:
        top-p sampling, or beam search when `beam_size` > 0. A reply ends at its first end-of-turn (beam
        search stops once every beam has one; sampling draws `response_tokens` and keeps what precedes it)."""
        prompt_BC = np.stack(
            [self.context_row(self.encode_turns(turn_lines(END_OF_TURN.join(c)))) for c in conversations]
        )
        R = self.config.data.response_tokens
        if beam_size > 0:
            new_BR = beam_replies(
                self.model.clone(decode=True),
                state.params,
                prompt_BC,
                beam_size=beam_size,
                max_new=R,
                eos_id=self.eot_id,
                length_alpha=length_alpha,
            )
        else:
            tokens_BS = decoding.generate(
                self.model.clone(decode=True),
                state.params,
                prompt_BC,
                rng,
                num_new=R,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
            )
            new_BR = tokens_BS[:, self.context_len :]
        return [self._decode_reply(row) for row in np.asarray(new_BR)]

    def _decode_reply(self, ids: np.ndarray) -> str:
        """Text up to the first end-of-turn; the padding id (never a target, so rarely drawn) is dropped."""
        ends = np.flatnonzero(ids == self.eot_id)
        ids = ids[: ends[0]] if len(ends) else ids
        return self.tokenizer.decode(ids[ids != self.pad_id]).strip()

    def sample(self, state: TrainState, rng: jax.Array, **options: Any) -> list[str]:
        """Replies to `context` (turns, one per line); options override `config.sample`."""
        o = sample_options(self.config.sample, options)
        turns = turn_lines(str(o["context"]))
        if o["beam_size"] > 0 and o["num_samples"] > 1:
            raise UserError("beam search gives one reply per context; ask for one sample or use --top-p")
        replies = self.reply(
            state,
            rng,
            [turns] * o["num_samples"],
            temperature=float(o["temperature"]),
            top_k=int(o["top_k"]),
            top_p=float(o["top_p"]),
            beam_size=int(o["beam_size"]),
            length_alpha=float(o["length_alpha"]),
        )
        return ["\n".join([*turns, f">>> {reply}"]) for reply in replies]

    def write_samples(self, outputs: list[str], directory: pathlib.Path, name: str) -> list[pathlib.Path]:
        return write_texts(outputs, directory, name)


def build(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> DialogueChitchat:
    """The system for `config`; its tokenizer is fitted on the training turns once and kept in `workdir`."""
    d = config.data

    def fit() -> text.Tokenizer:
        records = catalog.records(d.name, d.train_split, d.dir or None)
        # every turn of a conversation but its first is some example's response
        train_text = END_OF_TURN.join(record["response"] for record in records)
        return text.build_tokenizer(d.tokenizer, train_text, d.bpe_vocab_size)

    return DialogueChitchat(config, text.workdir_tokenizer(workdir, d.tokenizer, fit))
