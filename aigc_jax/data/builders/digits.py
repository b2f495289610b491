"""TFDS builder `digits`: scikit-learn's 1,797 handwritten digits, 8x8, for quick image tests.

The images are the UCI "Optical Recognition of Handwritten Digits" test set as bundled in the
scikit-learn wheel (`sklearn.datasets.load_digits`): counts of set pixels in 4x4 blocks of 32x32
bitmaps, so values run 0..16. They are stored as uint8 `(8, 8, 1)` scaled to 0..255
(`round(v * 255 / 16)`), the range every image set here shares; `label` is int64 in 0..9.

Splits come from one fixed permutation (seed 0) of the 1,797 items: its first 360 are `test`, the next
180 `validation`, the other 1,257 `train`; each split keeps the original order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

NUM_ITEMS = 1_797
SPLIT_SIZES = {"test": 360, "validation": 180}  # train takes the rest: 1,257
MAX_VALUE = 16

# Pixels are stored as one raw byte string per array: the default encoding writes every uint8 as its
# own int64 protobuf value, which makes building and reading several times slower.
_PIXELS = tfds.features.Encoding.BYTES

_CITATION = """\
@misc{alpaydin1998digits,
  author = {E. Alpaydin and C. Kaynak},
  title = {Optical Recognition of Handwritten Digits},
  year = {1998},
  howpublished = {UCI Machine Learning Repository},
  doi = {10.24432/C50P49},
  note = {Read from scikit-learn's bundled copy, sklearn.datasets.load_digits}
}
"""


def split_indices(num_items: int = NUM_ITEMS, seed: int = 0) -> dict[str, np.ndarray]:
    """Sorted item indices of each split, from one fixed permutation."""
    perm = np.random.default_rng(seed).permutation(num_items)
    n_test, n_validation = SPLIT_SIZES["test"], SPLIT_SIZES["validation"]
    return {
        "train": np.sort(perm[n_test + n_validation :]),
        "validation": np.sort(perm[n_test : n_test + n_validation]),
        "test": np.sort(perm[:n_test]),
    }


def to_uint8(values: np.ndarray) -> np.ndarray:
    """0..16 block counts -> 0..255 uint8 (round half to even, as Python's `round`)."""
    return np.round(np.asarray(values, dtype=np.float64) * 255 / MAX_VALUE).astype(np.uint8)


def load_items() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 `[1797, 8, 8, 1]`, labels `[1797]`) from scikit-learn."""
    # Imported here: scikit-learn takes a second to import and only this builder needs it.
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = to_uint8(digits.images)[..., None]
    assert images.shape == (NUM_ITEMS, 8, 8, 1), images.shape
    return images, np.asarray(digits.target)


class Digits(tfds.core.GeneratorBasedBuilder):
    """Handwritten digits 0-9, 8x8 grey-scale, from scikit-learn."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "sklearn.datasets.load_digits scaled to 0..255; splits 1257/180/360 by seed 0."
    }

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8, encoding=_PIXELS),
                    "label": tfds.features.Tensor(shape=(), dtype=np.int64),
                }
            ),
            homepage="https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits",
            citation=_CITATION,
            disable_shuffling=True,  # keep the original order: reading back is then predictable
            license="CC-BY-4.0 (https://creativecommons.org/licenses/by/4.0/), UCI ML Repository",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        del dl_manager  # the data ship inside the scikit-learn wheel
        images, labels = load_items()
        return {
            split: self._generate_examples(images[idx], labels[idx]) for split, idx in split_indices().items()
        }

    def _generate_examples(
        self, images: np.ndarray, labels: np.ndarray
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        for i, (image, label) in enumerate(zip(images, labels.astype(np.int64), strict=True)):
            yield i, {"image": image, "label": label}
