"""Tokenizers for language models: characters, words, or byte-level BPE from Hugging Face `tokenizers`.

A tokenizer is fitted on the training text, saved as one JSON file beside the checkpoints (with a
`"kind"` field saying which class reads it), and loaded back for evaluation and sampling.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

from aigc_jax.errors import UserError

DEFAULT_BPE_VOCAB_SIZE = 1024
UNKNOWN_CHAR = "\ufffd"  # what the char tokenizer's unknown id decodes to
PAD_ID = 0  # the word tokenizer's padding id (sentences in a batch are padded with it)
UNKNOWN_ID = 1  # the word tokenizer's id for any word outside its vocabulary
UNKNOWN_WORD = "<unk>"  # what UNKNOWN_ID decodes to


@runtime_checkable
class Tokenizer(Protocol):
    """Text <-> int32 token ids."""

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> np.ndarray: ...

    def decode(self, ids: Any) -> str: ...

    def to_json(self) -> str: ...


class CharTokenizer:
    """One id per character seen in the training text; id 0 stands for any unseen character."""

    kind = "char"

    def __init__(self, chars: str):
        self.chars = "".join(sorted(set(chars)))
        self._id_to_char = np.array([UNKNOWN_CHAR, *self.chars])
        # A lookup table indexed by code point makes encoding one vectorised gather.
        codes = _code_points(self.chars)
        self._lut = np.zeros(int(codes.max(initial=0)) + 1, dtype=np.int32)
        self._lut[codes] = np.arange(1, len(codes) + 1, dtype=np.int32)

    @classmethod
    def fit(cls, text: str) -> CharTokenizer:
        return cls(text)

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str) -> np.ndarray:
        codes = _code_points(text)
        known = codes < len(self._lut)
        return np.where(known, self._lut[np.where(known, codes, 0)], 0).astype(np.int32)

    def decode(self, ids: Any) -> str:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        ids = np.where((ids >= 0) & (ids < self.vocab_size), ids, 0)
        return "".join(self._id_to_char[ids].tolist())

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "chars": self.chars})

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> CharTokenizer:
        return cls(obj["chars"])


class BpeTokenizer:
    """Byte-level BPE (GPT-2 style): any text encodes, and decoding inverts encoding exactly."""

    kind = "bpe"

    def __init__(self, tokenizer: tokenizers.Tokenizer):
        self.tokenizer = tokenizer

    @classmethod
    def fit(cls, text: str, vocab_size: int = DEFAULT_BPE_VOCAB_SIZE) -> BpeTokenizer:
        if vocab_size < 256:
            raise UserError(
                f"A byte-level BPE vocabulary holds at least the 256 bytes, not {vocab_size}; "
                f"set --config.data.bpe_vocab_size to 256 or more."
            )
        tok = tokenizers.Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is unknown
            show_progress=False,
        )
        tok.train_from_iterator([text], trainer=trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> np.ndarray:
        # Long texts are cut into chunks that pre-tokenize identically (see `_bpe_safe_chunks`) and
        # encoded in parallel: a 5 MB corpus takes ~5 s as one string on one core.
        encodings = self.tokenizer.encode_batch(_bpe_safe_chunks(text))
        return np.concatenate([np.asarray(e.ids, dtype=np.int32) for e in encodings] or [_EMPTY_IDS])

    def decode(self, ids: Any) -> str:
        return self.tokenizer.decode(np.asarray(ids, dtype=np.int64).reshape(-1).tolist())

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "tokenizer": json.loads(self.tokenizer.to_str())})

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> BpeTokenizer:
        return cls(tokenizers.Tokenizer.from_str(json.dumps(obj["tokenizer"])))


class WordTokenizer:
    """One id per vocabulary word: 0 is padding, 1 any word outside the vocabulary, then the words of
    the training text from most to least frequent (ties alphabetical), so a size cut keeps the commonest.

    Text is split by `word_tokens`; decoding joins words with spaces, so it inverts encoding only up to
    case and spacing.
    """

    kind = "word"

    def __init__(self, words: Sequence[str]):
        self.words = list(words)
        self._ids = {word: i for i, word in enumerate(self.words, start=UNKNOWN_ID + 1)}

    @classmethod
    def fit(cls, text: str, vocab_size: int | None = None, min_count: int = 1) -> WordTokenizer:
        """Keeps the words seen at least `min_count` times, at most `vocab_size` ids in all (padding and
        unknown included; None = no limit)."""
        if vocab_size is not None and vocab_size < 3:
            raise UserError(
                f"A word vocabulary holds padding, unknown and at least one word, so 3 or more ids, not "
                f"{vocab_size}; raise the vocabulary size (or leave it unset to keep every word)."
            )
        counts = collections.Counter(word_tokens(text))
        ranked = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls(ranked if vocab_size is None else ranked[: vocab_size - 2])

    @property
    def vocab_size(self) -> int:
        return len(self.words) + 2

    def encode(self, text: str) -> np.ndarray:
        return np.array([self._ids.get(w, UNKNOWN_ID) for w in word_tokens(text)], dtype=np.int32)

    def decode(self, ids: Any) -> str:
        """Words joined by spaces; padding is skipped, and unknown or out-of-range ids read `<unk>`."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1).tolist()
        return " ".join(
            self.words[i - 2] if 2 <= i < self.vocab_size else UNKNOWN_WORD for i in ids if i != PAD_ID
        )

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "words": self.words})

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> WordTokenizer:
        return cls(obj["words"])


# Tokens as in Kim (2014)'s `clean_str`, on lower-cased text: runs of letters and digits, English clitics
# split off ("don't" -> do n't, "he's" -> he 's), and every other non-space character on its own.
_WORD_TOKEN = re.compile(r"n't\b|'(?:s|re|ve|d|ll|m)\b|\w+?(?=n't\b)|\w+|[^\w\s]")


def word_tokens(text: str) -> list[str]:
    """The word tokenizer's split of `text`: lower-cased words, clitics and punctuation marks."""
    return _WORD_TOKEN.findall(text.lower())


TOKENIZER_FILE = "tokenizer.json"  # a run's tokenizer, kept in its workdir beside the checkpoints

_KINDS: dict[str, type[CharTokenizer] | type[WordTokenizer] | type[BpeTokenizer]] = {
    "char": CharTokenizer,
    "word": WordTokenizer,
    "bpe": BpeTokenizer,
}


def build_tokenizer(kind: str, text: str, vocab_size: int | None = None) -> Tokenizer:
    """Fits a tokenizer of `kind` on `text` (`vocab_size` applies to `word` and `bpe`; `char` takes what
    it sees). `WordTokenizer.fit` also takes a frequency cut-off."""
    if kind == "char":
        return CharTokenizer.fit(text)
    if kind == "word":
        return WordTokenizer.fit(text, vocab_size)
    if kind == "bpe":
        return BpeTokenizer.fit(text, vocab_size or DEFAULT_BPE_VOCAB_SIZE)
    raise UserError(f"Unknown tokenizer kind {kind!r}; use one of: {', '.join(_KINDS)}.")


def workdir_tokenizer(workdir: str | os.PathLike, kind: str, fit: Callable[[], Tokenizer]) -> Tokenizer:
    """The run's tokenizer: read from `workdir/tokenizer.json`, or fitted once by `fit()` and kept there,
    so evaluation and sampling encode exactly as training did. A kept tokenizer of another `kind` than the
    config asks for (the config changed after the first run) is a `UserError`, not a silent reuse."""
    path = pathlib.Path(workdir) / TOKENIZER_FILE
    if not path.exists():
        tokenizer = fit()
        save_tokenizer(tokenizer, path)
        return tokenizer
    tokenizer = load_tokenizer(path)
    if tokenizer.kind != kind:
        raise UserError(
            f"{path} holds the {tokenizer.kind} tokenizer this workdir was trained with, but the config asks "
            f"for a {kind} one; train in a new --workdir"
        )
    return tokenizer


def save_tokenizer(tok: Tokenizer, path: str | os.PathLike) -> None:
    """Writes the tokenizer as one JSON file."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tok.to_json(), encoding="utf-8")


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Reads a tokenizer written by `save_tokenizer`."""
    path = pathlib.Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(
            f"Cannot read a tokenizer from {path} ({e}); point to the tokenizer.json of a run."
        ) from e
    kind = obj.get("kind") if isinstance(obj, dict) else None
    if kind not in _KINDS:
        raise UserError(
            f"{path} is not a tokenizer file (kind {kind!r}); point to the tokenizer.json of a run."
        )
    return _KINDS[kind].from_dict(obj)


_BPE_CHUNK_CHARS = 1 << 16
_EMPTY_IDS = np.zeros(0, dtype=np.int32)
_NEWLINE_AFTER_NON_SPACE = re.compile(r"(?<=\S)\n")


def _bpe_safe_chunks(text: str, size: int = _BPE_CHUNK_CHARS) -> list[str]:
    """Cuts `text` into pieces of about `size` characters, only just before a newline that follows a
    non-space character.

    The byte-level pre-tokenizer (GPT-2's regex) never joins such a character with the whitespace
    after it and looks ahead only within whitespace, so encoding the pieces separately and
    concatenating gives exactly the ids of encoding the whole text.
    """
    pieces, start = [], 0
    while len(text) - start > size:
        cut = _NEWLINE_AFTER_NON_SPACE.search(text, start + size)
        if cut is None:
            break
        pieces.append(text[start : cut.start()])
        start = cut.start()
    pieces.append(text[start:])
    return pieces


def _code_points(text: str) -> np.ndarray:
    """Unicode code points of `text` as an int64 array, without a Python loop."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
