"""TFDS builder `fashion_scenes`: a constructed segmentation benchmark of Fashion-MNIST collages.

No hand-labelled segmentation masks ship in any package the project can install, so scenes are
composed from Fashion-MNIST items (the `fashion_mnist_debian` IDX files) with exact per-pixel labels.
This is a constructed benchmark, not a natural-image one: say so wherever its scores are reported.

Each scene is a black 64x64 canvas (`image` uint8 `(64, 64, 1)`) onto which K items (K uniform in
{2, 3, 4}) are pasted, in order, at uniformly random integer offsets (row, column) in [0, 36]^2, so an
item may overlap earlier ones but never leaves the canvas. Only an item's pixels brighter than 32
(`FOREGROUND_THRESHOLD`) are pasted: each overwrites the canvas with its value and sets `mask` (uint8
`(64, 64)`) to 1 + the item's class; fainter pixels leave canvas and mask as they were. Items are drawn
uniformly with replacement. Hence, exactly:

- `mask == 0` (background, nothing pasted there) wherever `image == 0`, and `image == 0` wherever
  `mask == 0`;
- `mask == 1 + c` where the last item pasted over that pixel (with a pixel brighter than 32 there) has
  class `c`, and `image` holds that item's pixel value, > 32;
- so 11 classes (0 background, 1..10 the Fashion-MNIST classes), and the faint anti-aliased rim of each
  item (values 1..32) is cut off: items look slightly thinner than in Fashion-MNIST, and an earlier
  item shows through a later one's faint rim.

Splits draw their items from disjoint pools, so no item of a validation or test scene was seen in
training: `train` (60,000 scenes) from the 55,000 `fashion_mnist` train items, `validation` (1,000)
from its 5,000 validation items, `test` (2,000) from the 10,000 t10k items. Each split has its own
fixed seed (`SPLIT_SEEDS`), so the scenes are the same on every machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from aigc_jax.data.builders import fashion_mnist

CANVAS = 64
MIN_ITEMS, MAX_ITEMS = 2, 4
FOREGROUND_THRESHOLD = 32  # item pixels above this are pasted; the rest is the item's background
NUM_CLASSES = 1 + len(fashion_mnist.CLASS_NAMES)  # background + the 10 Fashion-MNIST classes
SPLIT_SIZES = {"train": 60_000, "validation": 1_000, "test": 2_000}
SPLIT_SEEDS = {"train": 1, "validation": 2, "test": 3}

# Pixels are stored as one raw byte string per array: the default encoding writes every uint8 as its
# own int64 protobuf value, which makes building and reading several times slower.
_PIXELS = tfds.features.Encoding.BYTES

_CITATION = """\
@article{xiao2017fashionmnist,
  author = {Han Xiao and Kashif Rasul and Roland Vollgraf},
  title = {Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms},
  journal = {arXiv preprint arXiv:1708.07747},
  year = {2017},
  note = {The scenes' items; scenes composed by aigc_jax from the Debian package dataset-fashion-mnist}
}
"""


def compose_scenes(
    images: np.ndarray, labels: np.ndarray, num_scenes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 `[N, 64, 64, 1]`, masks uint8 `[N, 64, 64]`): `num_scenes` collages of the items.

    `images` are uint8 `[M, h, w]` or `[M, h, w, 1]` with h, w <= 64, `labels` their classes `[M]`;
    the rules are in the module docstring. A pure function of its arguments: the same seed gives the
    same scenes. Vectorised over scenes: each of the at most 4 paste rounds is one gather and one
    scatter for all scenes that still have an item to paste.
    """
    items = np.asarray(images, dtype=np.uint8)
    items = items[..., 0] if items.ndim == 4 else items
    labels = np.asarray(labels)
    h, w = items.shape[1:]
    rng = np.random.default_rng(seed)
    counts = rng.integers(MIN_ITEMS, MAX_ITEMS + 1, size=num_scenes)
    picks = rng.integers(0, len(items), size=(num_scenes, MAX_ITEMS))
    tops = rng.integers(0, CANVAS - h + 1, size=(num_scenes, MAX_ITEMS))
    lefts = rng.integers(0, CANVAS - w + 1, size=(num_scenes, MAX_ITEMS))

    canvas_NHW = np.zeros((num_scenes, CANVAS, CANVAS), dtype=np.uint8)
    mask_NHW = np.zeros((num_scenes, CANVAS, CANVAS), dtype=np.uint8)
    for k in range(MAX_ITEMS):
        scenes = np.flatnonzero(counts > k)  # each scene at most once per round: no write conflicts
        rows = (tops[scenes, k, None] + np.arange(h))[:, :, None]  # [S, h, 1]
        cols = (lefts[scenes, k, None] + np.arange(w))[:, None, :]  # [S, 1, w]
        where = (scenes[:, None, None], rows, cols)
        item_Shw = items[picks[scenes, k]]
        fg_Shw = item_Shw > FOREGROUND_THRESHOLD
        canvas_NHW[where] = np.where(fg_Shw, item_Shw, canvas_NHW[where])
        cls_S = (1 + labels[picks[scenes, k]]).astype(np.uint8)
        mask_NHW[where] = np.where(fg_Shw, cls_S[:, None, None], mask_NHW[where])
    return canvas_NHW[..., None], mask_NHW


def split_scenes() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(images, masks) of each split, composed from that split's Fashion-MNIST items."""
    items = fashion_mnist.split_items()
    return {
        split: compose_scenes(*items[split], num_scenes=SPLIT_SIZES[split], seed=SPLIT_SEEDS[split])
        for split in SPLIT_SIZES
    }


class FashionScenes(tfds.core.GeneratorBasedBuilder):
    """64x64 collages of 2-4 Fashion-MNIST items with per-pixel class masks (11 classes)."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "2-4 items per 64x64 scene, pixels > 32 pasted; 12000/1000/2000 scenes, seeds 1/2/3.",
        # A U-Net of 31M parameters over-fitted 12,000 scenes (validation loss up from its 6,000th step
        # of 20,000 while training loss fell to 0.01); validation and test scenes are unchanged.
        "1.1.0": "60000 train scenes (same rules and seed); validation and test unchanged.",
    }

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(
                        shape=(CANVAS, CANVAS, 1), dtype=np.uint8, encoding=_PIXELS
                    ),
                    "mask": tfds.features.Tensor(shape=(CANVAS, CANVAS), dtype=np.uint8, encoding=_PIXELS),
                }
            ),
            homepage=fashion_mnist.HOMEPAGE,
            citation=_CITATION,
            disable_shuffling=True,  # keep the composition order: reading back is then predictable
            license=fashion_mnist.LICENSE + " (the items); the composition is part of aigc_jax (Apache-2.0)",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        del dl_manager  # composed from the Fashion-MNIST files of a Debian package
        return {split: self._generate_examples(*scenes) for split, scenes in split_scenes().items()}

    def _generate_examples(
        self, images: np.ndarray, masks: np.ndarray
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
            yield i, {"image": image, "mask": mask}
