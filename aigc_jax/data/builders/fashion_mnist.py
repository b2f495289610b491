"""TFDS builder `fashion_mnist_debian`: Fashion-MNIST from the Debian package `dataset-fashion-mnist`.

70,000 grey-scale 28x28 images of Zalando articles in 10 classes, read from the package's IDX files
(`/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`; another folder
with the same four files can be named by `$AIGC_JAX_FASHION_MNIST_DIR`). TFDS already registers a
catalogue builder `fashion_mnist` (downloaded when online), so this one needs another name.

Splits: `test` is the 10,000 t10k items; the 60,000 training items are split by a fixed permutation
(seed 0) into `validation` (5,000) and `train` (55,000), so a validation score never depends on a
run's seed and is never computed on data the model trained on. Each split keeps the IDX order.

The features are plain `Tensor`s (`image` uint8 `(28, 28, 1)`, `label` int64 in 0..9; the class names
are `CLASS_NAMES`): `tfds.features.Image` and `ClassLabel` need TensorFlow to encode, and this builder
must build without it, into the `array_record` format read by `tfds.data_source`.
"""

from __future__ import annotations

import gzip
import os
import pathlib
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from aigc_jax.errors import UserError

FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_DIR_ENV = "AIGC_JAX_FASHION_MNIST_DIR"
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
NUM_TRAIN_ITEMS = 60_000  # in the IDX training files, before the validation split is carved out
NUM_VALIDATION = 5_000
NUM_TEST = 10_000

# The IDX header's third byte names the element type; the data are big-endian.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# Pixels are stored as one raw byte string per array: the default encoding writes every uint8 as its
# own int64 protobuf value, which makes building and reading several times slower.
_PIXELS = tfds.features.Encoding.BYTES

_CITATION = """\
@article{xiao2017fashionmnist,
  author = {Han Xiao and Kashif Rasul and Roland Vollgraf},
  title = {Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms},
  journal = {arXiv preprint arXiv:1708.07747},
  year = {2017},
  note = {Read from the Debian package dataset-fashion-mnist}
}
"""
HOMEPAGE = "https://github.com/zalandoresearch/fashion-mnist"
LICENSE = "MIT (https://opensource.org/licenses/MIT), (c) 2017 Zalando SE"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array in a gzipped IDX file (the MNIST file format), in native byte order.

    The header is two zero bytes, a type code, the number of dimensions, then one big-endian uint32 per
    dimension; a file that does not start that way, or whose size disagrees with it, is refused.
    """
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_DTYPES:
        raise UserError(
            f"{path} is not an IDX file (bad magic number {data[:4].hex()}); "
            f"reinstall it with: apt-get install --reinstall dataset-fashion-mnist"
        )
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)) * dtype.itemsize:
        raise UserError(
            f"{path} is truncated or corrupt (its header says shape {shape}); "
            f"reinstall it with: apt-get install --reinstall dataset-fashion-mnist"
        )
    return np.frombuffer(data, dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def source_dir() -> pathlib.Path:
    """Where the IDX files are read from: `$AIGC_JAX_FASHION_MNIST_DIR`, or the Debian package's folder."""
    override = os.environ.get(FASHION_MNIST_DIR_ENV)
    return pathlib.Path(override).expanduser() if override else FASHION_MNIST_DIR


def load_idx(part: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 `[N, 28, 28]`, labels uint8 `[N]`) of the IDX files' `train` or `t10k` part."""
    folder = source_dir()
    paths = [folder / f"{part}-{kind}-ubyte.gz" for kind in ("images-idx3", "labels-idx1")]
    if not all(p.is_file() for p in paths):
        raise UserError(
            f"The Fashion-MNIST files ({paths[0].name} and {paths[1].name}) are not in {folder}; install "
            f"them with `apt-get install dataset-fashion-mnist` (or point ${FASHION_MNIST_DIR_ENV} at a "
            f"folder holding them), or, when online, use the TFDS catalogue copy: "
            f"--config.data.name=tfds_fashion_mnist."
        )
    images, labels = (read_idx(p) for p in paths)
    assert images.shape[1:] == (28, 28) and labels.shape == images.shape[:1], (images.shape, labels.shape)
    return images, labels


def carve_validation(num_items: int, num_validation: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) of `num_items`, split by a fixed permutation, each sorted.

    Shared with the catalogue copy of the data set (`tfds_fashion_mnist`), so both carve a validation
    split of the same size by the same rule. The items differ: TFDS stores the catalogue's train split
    in its own shuffled order, not the IDX order, so its scores are comparable, not identical.
    """
    perm = np.random.default_rng(seed).permutation(num_items)
    return np.sort(perm[num_validation:]), np.sort(perm[:num_validation])


def split_items() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(images, labels) of each split; the images gain a channel axis, `[N, 28, 28, 1]`."""
    train_images, train_labels = load_idx("train")
    test_images, test_labels = load_idx("t10k")
    assert len(train_images) == NUM_TRAIN_ITEMS and len(test_images) == NUM_TEST, (
        f"expected {NUM_TRAIN_ITEMS} + {NUM_TEST} items, found {len(train_images)} + {len(test_images)}"
    )
    train, validation = carve_validation(NUM_TRAIN_ITEMS, NUM_VALIDATION)
    return {
        "train": (train_images[train, ..., None], train_labels[train]),
        "validation": (train_images[validation, ..., None], train_labels[validation]),
        "test": (test_images[..., None], test_labels),
    }


class FashionMnistDebian(tfds.core.GeneratorBasedBuilder):
    """Fashion-MNIST, 28x28 grey-scale articles in 10 classes, from the Debian package."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "Debian dataset-fashion-mnist IDX files; train/validation carved by seed 0, t10k as test."
    }

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8, encoding=_PIXELS),
                    "label": tfds.features.Tensor(shape=(), dtype=np.int64),
                }
            ),
            homepage=HOMEPAGE,
            citation=_CITATION,
            disable_shuffling=True,  # keep the IDX order: reading back is then predictable
            license=LICENSE,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        del dl_manager  # the files come from a Debian package, not a download
        return {split: self._generate_examples(*items) for split, items in split_items().items()}

    def _generate_examples(
        self, images: np.ndarray, labels: np.ndarray
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        for i, (image, label) in enumerate(zip(images, labels.astype(np.int64), strict=True)):
            yield i, {"image": image, "label": label}
