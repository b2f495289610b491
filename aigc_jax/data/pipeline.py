"""Grain input pipelines for language modelling on one long token stream.

Training samples every start offset of the stream, globally shuffled without materialising anything
(Grain's `MapDataset.shuffle` permutes indices lazily), reshuffled each epoch, and split across
processes. Its iterator state is a few integers, saved with the train state so a resumed run continues
on the exact next batch.

`bucketed_train_dataset` batches padded sequences (words, sentences) of similar length together and cuts
each batch to its bucket's length, so compute is not spent on padding; each bucket is one jit shape.

Evaluation walks the stream in non-overlapping windows so every target token is scored exactly once;
padding carries weight 0 and all batches share one shape (one jit compilation).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grain
import jax
import numpy as np

from aigc_jax.errors import UserError

# A few batches ahead on a couple of threads: windows are cheap to cut, and a deep prefetch of large
# batches would hold gigabytes.
_READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=8)


class Windows:
    """Start offsets `[B]` -> `{"inputs", "targets"}` int32 `[B, seq_len]`, targets shifted by one.

    A small class (not a closure) so the pipeline stays picklable for Grain's worker processes.
    """

    def __init__(self, tokens: np.ndarray, seq_len: int):
        self.tokens = np.asarray(tokens, dtype=np.int32)
        self.offsets = np.arange(seq_len + 1)

    def __call__(self, starts: np.ndarray) -> dict[str, np.ndarray]:
        w_BT = self.tokens[np.asarray(starts)[:, None] + self.offsets]  # [B, seq_len + 1]
        return {"inputs": w_BT[:, :-1], "targets": w_BT[:, 1:]}


def lm_train_dataset(
    tokens: np.ndarray, seq_len: int, global_batch_size: int, seed: int
) -> grain.IterDataset:
    """Endless shuffled batches of this process's share of a global batch of `seq_len` windows.

    Every start offset `0 .. len(tokens) - seq_len - 1` is one example. Epochs follow each other with a
    fresh permutation (the shuffle seed is folded with the epoch), and a batch may span two epochs.
    Process `p` of `k` takes global examples `p, p + k, ...`, so the processes' batches together form
    one contiguous global batch.
    """
    tokens = np.asarray(tokens)
    num_examples = num_train_examples(len(tokens), seq_len)
    local_batch_size = per_process_batch_size(global_batch_size, jax.process_count())
    starts = grain.MapDataset.range(num_examples).shuffle(seed=seed % 2**32).repeat()
    starts = starts[jax.process_index() :: jax.process_count()]
    # Batching the offsets first turns the per-example slicing into one vectorised gather per batch;
    # the result equals mapping each window and then batching.
    batches = starts.batch(local_batch_size, drop_remainder=True).map(Windows(tokens, seq_len))
    return batches.to_iter_dataset(_READ_OPTIONS)


def num_train_examples(n_tokens: int, seq_len: int) -> int:
    """How many training windows (start offsets) a stream of `n_tokens` has."""
    if seq_len < 1:
        raise UserError(f"windows of {seq_len} tokens hold nothing; set --config.model.max_len to 1 or more")
    if n_tokens < seq_len + 1:
        raise UserError(
            f"The text has {n_tokens} tokens, too few for windows of seq_len={seq_len} (plus one target); "
            f"lower --config.model.max_len or use a larger data set."
        )
    return n_tokens - seq_len


def per_process_batch_size(global_batch_size: int, process_count: int) -> int:
    """This process's share of the global batch; it must divide evenly."""
    if global_batch_size < 1 or global_batch_size % process_count:
        raise UserError(
            f"The global batch size {global_batch_size} does not split evenly over {process_count} "
            f"processes; set --config.train.batch_size to a positive multiple of {process_count}."
        )
    return global_batch_size // process_count


def num_eval_batches(n_tokens: int, seq_len: int, batch_size: int) -> int:
    """How many batches `lm_eval_batches` yields for a stream of `n_tokens` (without `max_batches`)."""
    num_windows = -(-(n_tokens - 1) // seq_len)  # ceil: the last window may be partial
    return -(-max(num_windows, 0) // batch_size)


def lm_eval_batches(
    tokens: np.ndarray, seq_len: int, batch_size: int, max_batches: int | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Deterministic batches covering every target token of `tokens` exactly once.

    Window `k` reads `tokens[k*T : (k+1)*T]` and predicts `tokens[k*T+1 : (k+1)*T+1]`. Past the end of
    the text, inputs and targets are 0 and `"weights"` (float32 `[B, T]`) is 0, so a weighted mean of
    per-token losses is exact however the text length falls. `batch_size` is global; each process gets
    its own rows (`[batch_size // process_count, T]`), as for training.
    """
    tokens = np.asarray(tokens, dtype=np.int32)
    n_batches = num_eval_batches(len(tokens), seq_len, batch_size)
    if max_batches is not None:
        n_batches = min(n_batches, max_batches)
    n_targets = len(tokens) - 1
    # This process's rows of each global batch: processes hold consecutive blocks of the batch axis.
    local = per_process_batch_size(batch_size, jax.process_count())
    rows = np.arange(jax.process_index() * local, (jax.process_index() + 1) * local)
    offsets_BT = rows[:, None] * seq_len + np.arange(seq_len)[None, :]
    for b in range(n_batches):
        pos_BT = b * batch_size * seq_len + offsets_BT  # input positions; targets sit one later
        valid_BT = pos_BT < n_targets
        inputs = np.where(valid_BT, tokens[np.minimum(pos_BT, n_targets)], 0)
        targets = np.where(valid_BT, tokens[np.minimum(pos_BT + 1, n_targets)], 0)
        yield {"inputs": inputs, "targets": targets, "weights": valid_BT.astype(np.float32)}


class LengthBuckets:
    """Stream position `i` -> this process's share of global batch `i`: rows of one length bucket, cut to
    that bucket's length, so short sequences are not padded to the longest.

    Each epoch deals every bucket's rows, shuffled, into whole batches (the remainder waits for the next
    epoch's shuffle) and shuffles the batches of all buckets together, from (`seed`, epoch) alone, so the
    iterator state (the position) restores it exactly. A small class (not a closure) so the pipeline stays
    picklable for Grain's worker processes.
    """

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        lengths: np.ndarray,
        buckets: tuple[int, ...],
        global_batch_size: int,
        seed: int,
    ):
        self.arrays, self.buckets, self.batch_size, self.seed = arrays, buckets, global_batch_size, seed
        bucket_of = np.searchsorted(np.asarray(buckets), lengths)  # the first bucket at least as long
        if (bucket_of == len(buckets)).any():
            raise ValueError(f"a row is longer than the longest bucket {buckets[-1]}")
        self.members = [np.flatnonzero(bucket_of == b) for b in range(len(buckets))]
        self.batches_per_epoch = sum(len(m) // global_batch_size for m in self.members)
        if self.batches_per_epoch == 0:
            raise UserError(
                f"no length bucket holds a whole batch of {global_batch_size} rows; "
                "lower --config.train.batch_size"
            )
        self._epoch: tuple[int, list[tuple[int, np.ndarray]]] | None = None  # the last epoch dealt

    def _deal(self, epoch: int) -> list[tuple[int, np.ndarray]]:
        rng = np.random.default_rng([self.seed, epoch])
        batches = []
        for length, members in zip(self.buckets, self.members, strict=True):
            rows = rng.permutation(members)
            whole = len(rows) // self.batch_size * self.batch_size
            batches += [(length, chunk) for chunk in rows[:whole].reshape(-1, self.batch_size)]
        return [batches[k] for k in rng.permutation(len(batches))]

    def __call__(self, position: int, _: Any) -> dict[str, np.ndarray]:
        epoch, k = divmod(position, self.batches_per_epoch)
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = (epoch, self._deal(epoch))
        length, rows_G = self._epoch[1][k]
        mine = rows_G[jax.process_index() :: jax.process_count()]
        return {key: value[mine, :length] for key, value in self.arrays.items()}


def bucketed_train_dataset(
    arrays: dict[str, np.ndarray],
    lengths: np.ndarray,
    buckets: tuple[int, ...],
    global_batch_size: int,
    seed: int,
) -> grain.IterDataset:
    """Endless shuffled batches of padded sequences `arrays` (`[N, buckets[-1]]` each, padding at the end)
    grouped by `lengths` (each row's longest real sequence) into `buckets`; see `LengthBuckets`."""
    per_process_batch_size(global_batch_size, jax.process_count())  # checks that it divides evenly
    to_batch = LengthBuckets(arrays, lengths, buckets, global_batch_size, seed)
    positions = grain.MapDataset.range(to_batch.batches_per_epoch).repeat()
    return positions.map_with_index(to_batch).to_iter_dataset(_READ_OPTIONS)
