"""Shakespeare's verse and prose lines as a set of fixed-length token sequences (`[N, T]` int32).

Such sets batch like image arrays: `in_memory.train_dataset` and `in_memory.eval_batches` take any dict of
equally long arrays.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from aigc_jax.data import catalog, text
from aigc_jax.errors import UserError


def shakespeare_lines(
    split: str, min_tokens: int, max_tokens: int, data_dir: str | os.PathLike | None = None
) -> list[str]:
    """The lines of the `shakespeare` works in `split` that make `min_tokens`..`max_tokens` word tokens
    (`text.word_tokens`), in order. Speaker names and headings (lines without lower-case letters) are
    left out; a line is a printed line of verse or prose, as in the works' text."""
    lines = []
    for _, body in catalog.documents("shakespeare", split, data_dir):
        for line in body.splitlines():
            line = line.strip()
            if line == line.upper():  # "HAMLET.", "ACT III", blank lines
                continue
            if min_tokens <= len(text.word_tokens(line)) <= max_tokens:
                lines.append(line)
    return lines


def encode_padded(tokenizer: text.Tokenizer, lines: Sequence[str], length: int) -> np.ndarray:
    """`[len(lines), length]` int32 ids, each line followed by padding (`text.PAD_ID`) up to `length`."""
    out = np.full((len(lines), length), text.PAD_ID, np.int32)
    for i, line in enumerate(lines):
        ids = tokenizer.encode(line)
        if len(ids) > length:
            raise UserError(f"line {i} has {len(ids)} tokens, more than the sequence length {length}")
        out[i, : len(ids)] = ids
    return out
