"""Grain input pipelines for language modelling on one long token stream.

Training samples every start offset of the stream, globally shuffled without materialising anything
(Grain's `MapDataset.shuffle` permutes indices lazily), reshuffled each epoch, and split across
processes. Its iterator state is a few integers, saved with the train state so a resumed run continues
on the exact next batch.

Evaluation walks the stream in non-overlapping windows so every target token is scored exactly once;
padding carries weight 0 and all batches share one shape (one jit compilation).
"""

from __future__ import annotations

from collections.abc import Iterator

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
    if seq_len < 1 or n_tokens < seq_len + 1:
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
