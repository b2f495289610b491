"""Image data sets held in memory (`catalog.arrays`): which set a system reads, and its pipelines, which
are the in-memory array pipelines of `in_memory.py` (batching, shuffling, crop/flip augmentation)."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import grain
import ml_collections
import numpy as np

from aigc_jax.data import catalog, in_memory
from aigc_jax.errors import UserError


def data_config(name: str, eval_split: str = "validation") -> ml_collections.ConfigDict:
    """The `config.data` of an image system: which data set, where it lives, what evaluation reads."""
    return ml_collections.ConfigDict({"name": name, "dir": "", "eval_split": eval_split})


class ImageSplits:
    """An image system's data: the splits of one data set in memory, and the pipelines over them.

    Splits load on first use (a few seconds for Fashion-MNIST) and stay in memory.
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        global_batch_size: int,
        seed: int,
        augment: in_memory.Augment | None = None,
        target: str = "label",
    ):
        self.config = config
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.augment = augment
        self.target = target  # "label" (one class per image) or "mask" (one per pixel)
        self.class_names = catalog.get_spec(config.name).class_names

    @functools.cache  # noqa: B019 -- one instance per system, kept for the system's lifetime
    def arrays(self, split: str) -> dict[str, np.ndarray]:
        arrays = catalog.arrays(self.config.name, split, self.config.dir or None)
        if self.target not in arrays:
            kind = "a class per pixel (a mask)" if self.target == "mask" else "a class per image"
            raise UserError(
                f"data set {self.config.name} gives no {self.target!r} for its images; this system needs "
                f"{kind}: choose another --config.data.name"
            )
        return arrays

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.arrays("train")["image"].shape[1:])

    def train_dataset(self) -> grain.IterDataset:
        return in_memory.train_dataset(self.arrays("train"), self.global_batch_size, self.seed, self.augment)

    def eval_batches(self, max_batches: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        eval_arrays = self.arrays(self.config.eval_split)
        return in_memory.eval_batches(eval_arrays, self.global_batch_size, max_batches)


class ImageDataMethods:
    """The data side of the `System` contract for a system whose `self.data` is an `ImageSplits`; image
    systems inherit it rather than each repeating it."""

    data: ImageSplits

    def count_items(self, batch: dict[str, np.ndarray]) -> int:
        return int(batch["image"].shape[0])

    def train_dataset(self) -> grain.IterDataset:
        return self.data.train_dataset()

    def eval_batches(self, max_batches: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        return self.data.eval_batches(max_batches)
