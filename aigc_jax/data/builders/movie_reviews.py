"""TFDS builder `movie_review_sentences`: sentiment of 10,568 movie-review sentences, from `vaderSentiment`.

Hutto & Gilbert (2014) had 20 people rate 10,605 sentences of Pang & Lee's rotten-tomatoes snippets
(the "MR" sentence-polarity data) from -4 to +4; the sdist `vaderSentiment==3.3.2` ships them in
`additional_resources/hutto_ICWSM_2014.tar.gz` as `hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt`:
tab-separated id, mean score, text, in latin-1. A sentence is `positive` (label 1) when its mean score
is > 0 and `negative` (0) when < 0; the 37 scored exactly 0 are dropped, leaving 5,242 positive and
5,326 negative.

Two fixed partitions, so no score depends on a random seed:
- splits: a permutation (seed 0) of all sentences gives `test` its first 10%, `validation` the next 10%
  and `train` the other 80%; each split keeps the file order.
- folds: every sentence carries `fold` in 0..9 for 10-fold cross-validation, stratified by label: each
  class is permuted (seed 1) and dealt round-robin to the folds, so every fold holds 10% of each class.
  Folds cut across the splits; cross-validation reads all three splits together.

Features: `id` (the file's sentence id), `text` (UTF-8, see `builders/strings.py`), `label`, `score`
(the mean human rating, float32) and `fold`.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds

from aigc_jax.data.builders.splits import split_of
from aigc_jax.data.builders.strings import string_feature, utf8
from aigc_jax.data.sources import fetch_pypi_sdist

PYPI_NAME = "vaderSentiment"
PYPI_VERSION = "3.3.2"
ARCHIVE = "additional_resources/hutto_ICWSM_2014.tar.gz"
MEMBER = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
CLASS_NAMES = ("negative", "positive")
NUM_POSITIVE = 5_242
NUM_NEGATIVE = 5_326
NUM_FOLDS = 10
SPLIT_FRACTIONS = {"test": 0.1, "validation": 0.1}  # train takes the rest
SPLIT_SEED = 0
FOLD_SEED = 1

_CITATION = """\
@inproceedings{hutto2014vader,
  author = {C. J. Hutto and Eric Gilbert},
  title = {VADER: A Parsimonious Rule-based Model for Sentiment Analysis of Social Media Text},
  booktitle = {Proceedings of the Eighth International AAAI Conference on Weblogs and Social Media (ICWSM)},
  year = {2014},
  note = {Movie-review sentences of Pang and Lee (2005) with human ratings; from PyPI vaderSentiment 3.3.2}
}
"""


def read_sentences() -> list[tuple[int, float, str]]:
    """(id, mean score, text) of every rated sentence, in file order, from the cached sdist."""
    archive = fetch_pypi_sdist(PYPI_NAME, PYPI_VERSION) / ARCHIVE
    with tarfile.open(archive, "r:gz") as tar:
        member = tar.extractfile(MEMBER)
        assert member is not None, f"{MEMBER} is not a file in {archive}"
        lines = member.read().decode("latin-1").splitlines()
    rows = [line.split("\t") for line in lines if line.strip()]
    assert all(len(row) == 3 for row in rows), f"expected id, score, text in every line of {MEMBER}"
    return [(int(i), float(score), text.strip()) for i, score, text in rows]


def labelled(sentences: list[tuple[int, float, str]]) -> list[tuple[int, float, str, int]]:
    """(id, score, text, label) of the non-neutral sentences: 1 when the score is > 0, 0 when < 0."""
    out = [(i, score, text, int(score > 0)) for i, score, text in sentences if score != 0]
    positive = sum(label for *_, label in out)
    assert (positive, len(out) - positive) == (NUM_POSITIVE, NUM_NEGATIVE), (positive, len(out) - positive)
    return out


def stratified_folds(labels: np.ndarray, num_folds: int = NUM_FOLDS, seed: int = FOLD_SEED) -> np.ndarray:
    """A fold in 0..num_folds-1 for each item: each class, permuted, is dealt round-robin to the folds."""
    rng = np.random.default_rng(seed)
    folds = np.zeros(len(labels), np.int64)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        folds[members] = np.arange(len(members)) % num_folds
    return folds


class MovieReviewSentences(tfds.core.GeneratorBasedBuilder):
    """Movie-review sentences labelled negative/positive by human ratings, with 10 CV folds."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "vaderSentiment 3.3.2 movie-review snippets; score 0 dropped; 80/10/10 split by seed 0; "
        "10 label-stratified folds by seed 1."
    }

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Tensor(shape=(), dtype=np.int64),
                    "text": string_feature(),
                    "label": tfds.features.Tensor(shape=(), dtype=np.int64),
                    "score": tfds.features.Tensor(shape=(), dtype=np.float32),
                    "fold": tfds.features.Tensor(shape=(), dtype=np.int64),
                }
            ),
            homepage="https://github.com/cjhutto/vaderSentiment",
            citation=_CITATION,
            disable_shuffling=True,  # keep the file order: reading back is then predictable
            license="MIT (https://opensource.org/licenses/MIT), (c) C.J. Hutto",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        del dl_manager  # the sdist comes through pip, which knows the machine's package index
        items = labelled(read_sentences())
        splits = split_of(len(items), SPLIT_FRACTIONS, SPLIT_SEED)
        folds = stratified_folds(np.array([label for *_, label in items]))
        return {
            split: self._generate_examples(
                [
                    (item, int(fold))
                    for item, name, fold in zip(items, splits, folds, strict=True)
                    if name == split
                ]
            )
            for split in ("train", "validation", "test")
        }

    def _generate_examples(
        self, items: list[tuple[tuple[int, float, str, int], int]]
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        for (sentence_id, score, text, label), fold in items:
            yield (
                sentence_id,
                {
                    "id": sentence_id,
                    "text": utf8(text),
                    "label": label,
                    "score": np.float32(score),
                    "fold": fold,
                },
            )
