"""Grapheme-to-phoneme conversion with an encoder-decoder transformer (source questions 5 and 27:
transformer text generation, here sequence-to-sequence).

The whole story of the system: the embedded `cmudict_g2p` data (a word's letters -> its ARPAbet
phonemes), teacher-forced training with optional label smoothing, and an evaluation that transcribes
every word of the split with greedy or beam search (jitted `lax` loops over the decoder's KV cache, in
`aigc_jax/decoding.py`) and scores it against all of the word's pronunciations:

- `wer`: the share of words whose output equals none of their pronunciations;
- `per`: phoneme edit distance to the closest pronunciation over that pronunciation's length (summed over
  words, then divided);
- `loss`: the token cross-entropy of the first pronunciation, teacher-forced.

Stress digits are stripped by default (`config.data.keep_stress=False`: 39 phonemes, AH0/AH1 -> AH), as
the published CMUdict G2P results do; with them kept, the outputs must also get the stress right and WER
is not comparable. Training batches words of similar length together, padded to 8, 12 or 16 tokens
(`config.data.length_buckets`: 1.7 times fewer padded tokens than padding all to 16); the ~0.1% of pairs
longer than 16 are left out of training. Evaluation pads to `config.model.max_len` (32) and reads every word.

Presets:
- `smoke`: seconds, for tests.
- `cpu`: the recorded experiment (experiments/transformer_g2p.py), ~30 minutes on 2 CPU cores.
- `full`: a wider model trained longer, for an accelerator.
"""

import dataclasses
import functools
import json
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aigc_jax import decoding, host, metrics
from aigc_jax.data import catalog, in_memory, pipeline, text
from aigc_jax.errors import UserError
from aigc_jax.models.gpt import size_fields
from aigc_jax.models.transformer import PAD_ID, Transformer
from aigc_jax.systems.base import sample_options
from aigc_jax.train import loop, losses, optim
from aigc_jax.train.state import TrainState, gradient_step

NAME = "transformer_g2p"
PRESETS = ("smoke", "cpu", "full")
LETTERS = "'abcdefghijklmnopqrstuvwxyz"  # the source alphabet of `cmudict_g2p`
BOS_ID, EOS_ID = 1, 2  # target ids; 0 is padding


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    config = loop.system_config(NAME, preset, PRESETS)
    config.data = ml_collections.ConfigDict(
        {
            "name": "cmudict_g2p",
            "dir": "",
            "eval_split": "validation",
            "keep_stress": False,
            # training batches words of similar length, padded to one of these (letters; start + phonemes)
            "length_buckets": (8, 12, 16),
        }
    )
    config.model = ml_collections.ConfigDict(
        {
            "num_layers": 3,  # on each side
            "num_heads": 4,
            "embed_dim": 128,
            "max_len": 32,  # longest word, and longest pronunciation + 1, the model reads or writes
            "dropout": 0.1,
            "dtype": "float32",
        }
    )
    config.train.label_smoothing = 0.1
    # how evaluation transcribes: beam_size 1 is greedy search
    config.decoding = ml_collections.ConfigDict({"beam_size": 1, "length_alpha": 0.6})
    config.sample = ml_collections.ConfigDict({"words": "hello phoneme transformer jax", "beam_size": 4})
    config.train.update(batch_size=256, eval_batches=4)
    config.optim.update(learning_rate=2e-3, warmup_steps=200, b2=0.98, weight_decay=0.01)

    if preset == "smoke":
        config.model.update(num_layers=1, num_heads=2, embed_dim=32)
        config.train.update(
            num_steps=20,
            batch_size=32,
            log_every=5,
            eval_every=10,
            eval_batches=1,
            final_eval_batches=2,
            checkpoint_every=10,
        )
        config.optim.update(warmup_steps=5)
    elif preset == "cpu":
        # 256 words a step take ~0.27 s on these 2 cores (as 2 devices) when nothing else runs: 14,000
        # steps (~32 epochs) are ~68 minutes (4,066 s of training, transformer_g2p__cpu.json). Shorter
        # schedules fell short of the targets: 2,000 steps reached test WER 0.367 and 5,000 steps 0.304
        # (transformer_g2p__cpu_{2000,5000}_steps.json).
        config.train.update(num_steps=14000, log_every=100, eval_every=1000, checkpoint_every=1000)
        # 2 cores as 2 data-parallel devices: the step took 0.88, 0.92, 0.88 and 0.84 of its one-device time
        # in four runs of benchmarks/cpu_devices.py; 400 real steps logged losses within 0.001 of the
        # one-device run's (experiments/results/transformer_g2p__cpu_devices_check.json)
        config.mesh.cpu_devices = 2
    elif preset == "full":
        config.model.update(num_layers=4, embed_dim=256, dropout=0.2)
        # 298 s of training on one H200 beside two other jobs (transformer_g2p__full.json)
        config.train.update(num_steps=20000, log_every=200, eval_every=2000, checkpoint_every=2000)
        config.optim.update(learning_rate=1e-3, warmup_steps=1000)
    return config


# --- data ------------------------------------------------------------------------------------------

Pronunciation = tuple[str, ...]


def strip_stress(phoneme: str) -> str:
    """`AH1` -> `AH`: ARPAbet marks stress with a digit on the vowels."""
    return phoneme.rstrip("012")


def load_split(data_config: ml_collections.ConfigDict, split: str) -> list[tuple[str, list[Pronunciation]]]:
    """(word, its distinct pronunciations) for every word of a split, in the data set's order."""
    entries = []
    for record in catalog.records(data_config.name, split, data_config.dir or None):
        if "pronunciations" not in record:
            raise UserError(
                f"data set {data_config.name} has no pronunciations; transformer_g2p trains on cmudict_g2p"
            )
        pronunciations = [tuple(line.split()) for line in record["pronunciations"].split("\n")]
        if not data_config.keep_stress:
            pronunciations = [tuple(strip_stress(p) for p in phones) for phones in pronunciations]
        entries.append((record["word"], list(dict.fromkeys(pronunciations))))  # stripping may merge some
    return entries


class Phonemes:
    """Target ids: 0 padding, 1 start, 2 end, then the phoneme inventory in sorted order."""

    def __init__(self, symbols: list[str]):
        self.symbols = sorted(symbols)
        self._ids = {symbol: i for i, symbol in enumerate(self.symbols, start=EOS_ID + 1)}

    @property
    def vocab_size(self) -> int:
        return len(self.symbols) + EOS_ID + 1

    def encode(self, phones: Pronunciation) -> list[int]:
        return [self._ids[p] for p in phones]

    def decode(self, ids: Any) -> str:
        """Phonemes up to the first end token, separated by spaces."""
        out = []
        for i in np.asarray(ids).tolist():
            if i == EOS_ID:
                break
            if i > EOS_ID:
                out.append(self.symbols[i - EOS_ID - 1])
        return " ".join(out)

    def to_json(self) -> str:
        return json.dumps({"symbols": self.symbols})


def letter_tokenizer() -> text.CharTokenizer:
    """Letters -> ids 1..27 (0, the char tokenizer's unknown id, is the source padding here)."""
    return text.CharTokenizer(LETTERS)


def _padded(rows: list[list[int]], length: int) -> np.ndarray:
    out = np.full((len(rows), length), PAD_ID, np.int32)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def pair_arrays(
    pairs: list[tuple[str, Pronunciation]], phonemes: Phonemes, length: int
) -> dict[str, np.ndarray]:
    """Teacher-forcing arrays `[N, length]`: `source` letters, decoder `inputs` (start + phonemes) and
    `targets` (phonemes + end); padding is 0 everywhere."""
    letters = letter_tokenizer()
    ids = [phonemes.encode(phones) for _, phones in pairs]
    return {
        "source": _padded([letters.encode(word).tolist() for word, _ in pairs], length),
        "inputs": _padded([[BOS_ID, *row] for row in ids], length),
        "targets": _padded([[*row, EOS_ID] for row in ids], length),
    }


def eval_arrays(
    entries: list[tuple[str, list[Pronunciation]]], phonemes: Phonemes, length: int
) -> dict[str, np.ndarray]:
    """`pair_arrays` of each word with its first pronunciation, plus all its pronunciations as
    `references` `[N, R, length]` with `reference_lengths` `[N, R]` (0 for padding)."""
    arrays = pair_arrays([(word, phones[0]) for word, phones in entries], phonemes, length)
    R = max(len(phones) for _, phones in entries)
    references = np.zeros((len(entries), R, length), np.int32)
    lengths = np.zeros((len(entries), R), np.int32)
    for i, (_, pronunciations) in enumerate(entries):
        for r, phones in enumerate(pronunciations):
            references[i, r, : len(phones)] = phonemes.encode(phones)
            lengths[i, r] = len(phones)
    return arrays | {"references": references, "reference_lengths": lengths}


# --- the system ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Transcriptions:
    """What `sample` returns: each word with the phonemes the model gives it."""

    words: tuple[str, ...]
    phonemes: tuple[str, ...]

    def __str__(self) -> str:
        width = max(len(word) for word in self.words)
        return "\n".join(f"{w:<{width}}  {p}" for w, p in zip(self.words, self.phonemes, strict=True))


@dataclasses.dataclass
class TransformerG2p:
    """The `System` for grapheme-to-phoneme conversion on `cmudict_g2p`."""

    config: ml_collections.ConfigDict
    phonemes: Phonemes

    def __post_init__(self) -> None:
        host.keep_freed_memory()  # its train step's scratch outgrows glibc's thread arenas (aigc_jax/host.py)
        self.model = Transformer(
            source_vocab_size=len(LETTERS) + 1,
            target_vocab_size=self.phonemes.vocab_size,
            **size_fields(self.config.model),
        )
        self.tx, self.schedule = optim.make_optimizer(self.config.optim, self.config.train.num_steps)

    # --- model and steps -------------------------------------------------------------------------

    def init_variables(self, rng: jax.Array) -> dict[str, Any]:
        tokens = jnp.zeros((1, self.config.data.length_buckets[-1]), jnp.int32)
        return self.model.init(rng, tokens, tokens)

    def train_step(
        self, state: TrainState, batch: dict[str, jax.Array]
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        weights_BT = (batch["targets"] != PAD_ID).astype(jnp.float32)
        smoothing = self.config.train.label_smoothing

        def loss_fn(params: Any, dropout_rng: jax.Array) -> tuple[jax.Array, dict[str, Any]]:
            logits_BTV = self.model.apply(
                {"params": params},
                batch["source"],
                batch["inputs"],
                train=True,
                rngs={"dropout": dropout_rng},
            )
            loss_BT = losses.cross_entropy(logits_BTV, batch["targets"], smoothing)
            correct_BT = jnp.argmax(logits_BTV, axis=-1) == batch["targets"]
            count = jnp.sum(weights_BT)
            accuracy = jnp.sum(correct_BT * weights_BT) / count
            return jnp.sum(loss_BT * weights_BT) / count, {"metrics": {"token_accuracy": accuracy}}

        return gradient_step(state, loss_fn)

    def eval_step(self, state: TrainState, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Teacher-forced token loss, and the word and phoneme errors of transcribing every word."""
        logits_BTV = self.model.apply({"params": state.params}, batch["source"], batch["inputs"])
        nll_BT = optax.softmax_cross_entropy_with_integer_labels(logits_BTV, batch["targets"])
        weights_BT = (batch["targets"] != PAD_ID) * batch["weight"][:, None]
        d = self.config.decoding
        outputs_BN = self.transcribe(state.params, batch["source"], d.beam_size, d.length_alpha)
        output_lengths_B = jnp.argmax(outputs_BN == EOS_ID, axis=1)  # the search ends every output with EOS
        errors = metrics.closest_reference_errors(
            outputs_BN, output_lengths_B, batch["references"], batch["reference_lengths"], batch["weight"]
        )
        return {"nll": jnp.sum(nll_BT * weights_BT), "tokens": jnp.sum(weights_BT), **errors}

    def summarize_eval(self, totals: dict[str, np.ndarray]) -> dict[str, float]:
        return {
            "loss": float(totals["nll"] / totals["tokens"]),
            "wer": metrics.wer(totals["word_errors"], totals["words"]),
            "per": metrics.per(totals["edits"], totals["reference_tokens"]),
        }

    def start_decoding(self, params: Any, source_BS: jax.Array) -> tuple[decoding.StepFn, Any, jax.Array]:
        """What a search over the decoder needs: its one-token step function, its cache after the prefill
        of the start token, and the logits of the first phoneme.

        The encoder runs once; its keys and values enter the decoder's cache in the prefill, so every
        later step reads them from the cache (and a beam search reorders them with its beams).
        """
        B = source_BS.shape[0]
        decoder = self.model.clone(decode=True)
        memory_BSD = self.model.apply({"params": params}, source_BS, method="encode")
        target_shape = jnp.zeros((B, self.config.model.max_len), jnp.int32)
        shapes = jax.eval_shape(decoder.init, jax.random.PRNGKey(0), source_BS, target_shape)
        empty = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["cache"])
        start_B1 = jnp.full((B, 1), BOS_ID, jnp.int32)
        logits_B1V, updated = decoder.apply(
            {"params": params, "cache": empty},
            start_B1,
            memory_BSD,
            source_BS != PAD_ID,
            method="decoder_logits",
            mutable=["cache"],
        )

        def step_fn(tokens_N1: jax.Array, cache: Any) -> tuple[jax.Array, Any]:
            variables = {"params": params, "cache": cache}
            logits_N1V, updated = decoder.apply(
                variables, tokens_N1, method="decoder_logits", mutable=["cache"]
            )
            return logits_N1V[:, -1], updated["cache"]

        return step_fn, updated["cache"], logits_B1V[:, -1]

    def transcribe(self, params: Any, source_BS: jax.Array, beam_size: int, length_alpha: float) -> jax.Array:
        """Phoneme ids `[B, max_len - 1]` of each word, ended by EOS and padded with it: greedy search for
        a beam of 1, else the best beam."""
        step_fn, cache, first_logits_BV = self.start_decoding(params, source_BS)
        max_new = self.config.model.max_len - 1  # the start token took position 0
        if beam_size == 1:
            return decoding.greedy_search(step_fn, cache, first_logits_BV, max_new=max_new, eos_id=EOS_ID)
        tokens_BKN, _ = decoding.beam_search(
            step_fn,
            cache,
            first_logits_BV,
            beam_size=beam_size,
            max_new=max_new,
            eos_id=EOS_ID,
            length_alpha=length_alpha,
        )
        return tokens_BKN[:, 0]

    def count_items(self, batch: dict[str, np.ndarray]) -> int:
        return int(batch["source"].shape[0])  # words

    # --- data ------------------------------------------------------------------------------------

    @functools.cached_property
    def _train_arrays(self) -> dict[str, np.ndarray]:
        length = self.config.data.length_buckets[-1]
        pairs = [
            (word, phones)
            for word, pronunciations in load_split(self.config.data, "train")
            for phones in pronunciations
            if len(word) <= length and len(phones) + 1 <= length  # the ~0.1% longer ones are left out
        ]
        return pair_arrays(pairs, self.phonemes, length)

    @functools.cached_property
    def _eval_arrays(self) -> dict[str, np.ndarray]:
        entries = load_split(self.config.data, self.config.data.eval_split)
        L = self.config.model.max_len
        longest = max(max(len(word), *(len(p) + 1 for p in phones)) for word, phones in entries)
        if longest > L:
            raise UserError(
                f"the {self.config.data.eval_split} split has a word or pronunciation of {longest} tokens, "
                f"more than config.model.max_len {L}; raise --config.model.max_len to {longest} or more"
            )
        return eval_arrays(entries, self.phonemes, L)

    def train_dataset(self) -> grain.IterDataset:
        c = self.config
        arrays = self._train_arrays
        lengths = np.maximum((arrays["source"] != PAD_ID).sum(1), (arrays["targets"] != PAD_ID).sum(1))
        buckets = tuple(c.data.length_buckets)
        return pipeline.bucketed_train_dataset(arrays, lengths, buckets, c.train.batch_size, c.train.seed)

    def eval_batches(self, max_batches: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        return in_memory.eval_batches(self._eval_arrays, self.config.train.batch_size, max_batches)

    # --- sampling --------------------------------------------------------------------------------

    def sample(self, state: TrainState, rng: jax.Array, **options: Any) -> Transcriptions:
        """Transcribes `words` (separated by spaces or commas); deterministic, so `rng` is unused."""
        del rng
        o = sample_options(self.config.sample, options)
        words = tuple(w for w in re.split(r"[\s,]+", str(o["words"]).lower()) if w)
        L = self.config.model.max_len
        bad = [w for w in words if len(w) > L or not set(w) <= set(LETTERS)]
        if not words or bad:
            raise UserError(
                f"give words of at most {L} letters a-z or apostrophes, e.g. --words 'hello world'"
                + (f"; cannot transcribe {bad}" if bad else "")
            )
        letters = letter_tokenizer()
        source_BS = _padded([letters.encode(w).tolist() for w in words], L)
        transcribe = jax.jit(self.transcribe, static_argnums=(2, 3))
        outputs_BN = transcribe(
            state.params, source_BS, int(o["beam_size"]), self.config.decoding.length_alpha
        )
        return Transcriptions(words, tuple(self.phonemes.decode(row) for row in np.asarray(outputs_BN)))

    def write_samples(
        self, outputs: Transcriptions, directory: pathlib.Path, name: str
    ) -> list[pathlib.Path]:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.txt"
        path.write_text(str(outputs) + "\n")
        return [path]


def build(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> TransformerG2p:
    """The system for `config`; its phoneme inventory is read from the training split once and kept in
    `workdir`, so evaluation and sampling need not read the training data."""
    path = pathlib.Path(workdir) / "phonemes.json"
    if path.exists():
        try:
            phonemes = Phonemes(json.loads(path.read_text())["symbols"])
        except (ValueError, KeyError, TypeError) as error:
            raise UserError(
                f"cannot read the phoneme inventory {path} ({type(error).__name__}: {error}); it is written "
                "by the first training run of this workdir: restore it, or train in a new --workdir"
            ) from error
    else:
        entries = load_split(config.data, "train")
        phonemes = Phonemes(sorted({p for _, prons in entries for phones in prons for p in phones}))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(phonemes.to_json())
    return TransformerG2p(config, phonemes)
