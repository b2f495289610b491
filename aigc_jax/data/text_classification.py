"""Data for sentence classifiers: which sentences train and which evaluate, as padded word-id arrays.

A labelled text set (`movie_review_sentences`) is read whole with `catalog.records`. `config.data.fold`
chooses the partition: -1 trains on the `train` split and evaluates on `config.data.eval_split`
(`validation`, or `test` for the reported number); k in 0..9 evaluates on fold k of all sentences and
trains on the other nine folds, so ten runs make a 10-fold cross-validation.

Sentences become word ids (`text.WordTokenizer`, fitted on the training sentences only) right-padded with
0 into `{"tokens": int32 [N, L], "label": int32 [N]}`; `L` is the longest training sentence, or
`config.data.max_len` when that is set (longer sentences are cut).

Training batches hold sentences of similar length, cut to their longest sentence (rounded up to a
multiple of `LENGTH_MULTIPLE`, so only a few shapes compile): the sentences, sorted by length in a
seeded random order, are dealt into fixed batches whose order is reshuffled every epoch. Most sentences
are far shorter than the longest, so a step costs well under half of one over fully padded batches;
the models ignore padding, so what they compute is unchanged. Evaluation walks the sentences in order with
the array pipeline of `data/in_memory.py` (weight-0 rows fill the last batch).
"""

from __future__ import annotations

import functools
import pathlib
from collections.abc import Iterator
from typing import Any

import grain
import jax
import ml_collections
import numpy as np

from aigc_jax.data import catalog, in_memory, text
from aigc_jax.data.pipeline import per_process_batch_size
from aigc_jax.errors import UserError

LENGTH_MULTIPLE = 16  # few shapes: each compiles once per run (seconds for the CNN)
# A few batches ahead on a couple of threads, as for images: a batch is one gather from memory.
_READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=8)


def data_config(name: str = "movie_review_sentences") -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "name": name,
            "dir": "",
            "fold": -1,  # -1: the fixed split; k >= 0: evaluate on fold k, train on the others
            "eval_split": "validation",  # with fold -1: validation, or test for the reported number
            "min_count": 1,  # words seen fewer times in the training sentences are unknown
            "max_len": 0,  # words kept per sentence; 0: the longest training sentence
        }
    )


def partition(config: ml_collections.ConfigDict) -> dict[str, list[dict[str, Any]]]:
    """`{"train": records, "eval": records}` of the partition `config.fold` names."""
    data_dir = config.dir or None
    if config.fold < 0:
        return {
            "train": catalog.records(config.name, "train", data_dir),
            "eval": catalog.records(config.name, config.eval_split, data_dir),
        }
    everything = [
        r for split in ("train", "validation", "test") for r in catalog.records(config.name, split, data_dir)
    ]
    if "fold" not in everything[0]:
        raise UserError(f"{config.name} has no cross-validation folds; set --config.data.fold=-1.")
    num_folds = max(int(r["fold"]) for r in everything) + 1
    if config.fold >= num_folds:
        raise UserError(
            f"{config.name} has folds 0..{num_folds - 1}, not {config.fold}; set --config.data.fold to one "
            f"of them (or -1 for the fixed split)."
        )
    return {
        "train": [r for r in everything if r["fold"] != config.fold],
        "eval": [r for r in everything if r["fold"] == config.fold],
    }


def pad_ids(id_rows: list[np.ndarray], length: int) -> np.ndarray:
    """int32 `[N, length]`: each row's ids from the left, cut at `length`, padded with `text.PAD_ID`."""
    out = np.full((len(id_rows), length), text.PAD_ID, np.int32)
    for i, ids in enumerate(id_rows):
        out[i, : min(len(ids), length)] = ids[:length]
    return out


def load_or_fit_tokenizer(
    config: ml_collections.ConfigDict, workdir: str | pathlib.Path
) -> text.WordTokenizer:
    """The run's word tokenizer: read from `workdir`, or fitted on the training sentences and kept there."""

    def fit() -> text.WordTokenizer:
        sentences = [r["text"] for r in partition(config)["train"]]
        return text.WordTokenizer.fit("\n".join(sentences), min_count=config.min_count)

    return text.workdir_tokenizer(workdir, "word", fit)


def length_batches(lengths: np.ndarray, global_batch_size: int, seed: int) -> list[tuple[np.ndarray, int]]:
    """(example indices `[G]`, padded length) of every training batch: all examples, sorted by length
    with ties in a seeded random order, dealt into consecutive batches. The last batch is filled up with
    randomly chosen repeats, so no sentence is left out."""
    n = len(lengths)
    perm = np.random.default_rng(seed).permutation(n)
    order = np.concatenate([perm, perm[: -n % global_batch_size]])
    order = order[np.argsort(lengths[order], kind="stable")]
    batches = order.reshape(-1, global_batch_size)
    longest = -(-lengths[batches].max(axis=1) // LENGTH_MULTIPLE) * LENGTH_MULTIPLE
    return [(rows, int(max(length, 1))) for rows, length in zip(batches, longest, strict=True)]


class TrimmedBatch:
    """(global batch indices `[G]`, length) -> this process's share of the batch, tokens cut to `length`.

    A small class (not a closure) so the pipeline stays picklable for Grain's worker processes.
    """

    def __init__(self, arrays: dict[str, np.ndarray], process_index: int, process_count: int):
        self.gather = in_memory.Batch(arrays, None, process_index, process_count)

    def __call__(self, batch: tuple[np.ndarray, int]) -> dict[str, np.ndarray]:
        indices_G, length = batch
        out = self.gather(indices_G)
        return out | {"tokens": out["tokens"][:, :length]}


def length_bucketed_dataset(
    arrays: dict[str, np.ndarray], global_batch_size: int, seed: int
) -> grain.IterDataset:
    """Endless batches of this process's share of each global batch of similar-length sentences; the
    batches (see `length_batches`) come in a fresh order every epoch."""
    if len(arrays["label"]) == 0:
        raise UserError("The training side is empty; choose a data set with sentences.")
    per_process_batch_size(global_batch_size, jax.process_count())  # checks that it divides evenly
    lengths = (arrays["tokens"] != text.PAD_ID).sum(axis=1)
    batches = length_batches(lengths, global_batch_size, seed)
    dataset = grain.MapDataset.source(batches).shuffle(seed=seed % 2**32).repeat()
    dataset = dataset.map(TrimmedBatch(arrays, jax.process_index(), jax.process_count()))
    return dataset.to_iter_dataset(_READ_OPTIONS)


class SentenceSplits:
    """A sentence classifier's data: both sides of the partition as word-id arrays, and their pipelines.

    The records load on first use (a few seconds) and stay in memory.
    """

    def __init__(
        self, config: ml_collections.ConfigDict, tokenizer: text.Tokenizer, global_batch_size: int, seed: int
    ):
        self.config = config
        self.tokenizer = tokenizer
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.class_names = catalog.get_spec(config.name).class_names

    @functools.cached_property
    def _records(self) -> dict[str, list[dict[str, Any]]]:
        return partition(self.config)

    @functools.cached_property
    def _ids(self) -> dict[str, list[np.ndarray]]:
        return {
            side: [self.tokenizer.encode(r["text"]) for r in rows] for side, rows in self._records.items()
        }

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @functools.cached_property
    def max_len(self) -> int:
        return self.config.max_len or max(1, max(len(ids) for ids in self._ids["train"]))

    @functools.cache  # noqa: B019 -- one instance per system, kept for the system's lifetime
    def arrays(self, side: str) -> dict[str, np.ndarray]:
        """`{"tokens": int32 [N, max_len], "label": int32 [N]}` of side `train` or `eval`."""
        labels = np.array([r["label"] for r in self._records[side]], np.int32)
        return {"tokens": pad_ids(self._ids[side], self.max_len), "label": labels}

    def train_dataset(self) -> grain.IterDataset:
        return length_bucketed_dataset(self.arrays("train"), self.global_batch_size, self.seed)

    def eval_batches(self, max_batches: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        return in_memory.eval_batches(self.arrays("eval"), self.global_batch_size, max_batches)
