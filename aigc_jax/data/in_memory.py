"""Grain input pipelines for data sets held in memory as a dict of equally long numpy arrays.

Image sets (`catalog.arrays`, see `images.py`) hold `"image"` uint8 `[N, H, W, C]` and the targets,
`"label"` `[N]` (classifiers, GANs) or `"mask"` `[N, H, W]` (segmentation); token sets (dialogue, G2P,
SeqGAN, the text classifiers) hold int arrays `[N, T]`. Batches give `"image"` as float32 in [-1, 1]
(`to_float`) and every other array as int32.

Training draws every example once per epoch in a fresh global order (Grain's lazy index shuffle, its
seed folded with the epoch), endlessly, and splits each global batch across processes. Augmentation
(random crop after zero padding, horizontal flip, random erasing) is drawn per global batch from a
generator seeded by the pipeline seed and the batch's position in the stream, so its iterator state is a
few integers, saved with the train state, and a resumed run reproduces the exact next batches,
augmentation included.
A set that is made rather than stored (`generated_train_dataset`, e.g. fresh `fashion_scenes` collages)
is made batch by batch from the same kind of per-position generator, and resumes the same way.

Evaluation walks the examples in order, each exactly once; the last batch is padded to full size with
weight-0 rows, so all batches share one shape (one jit compilation) and a weighted mean is exact.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import grain
import jax
import numpy as np

from aigc_jax.data.pipeline import per_process_batch_size
from aigc_jax.errors import UserError

# A few batches ahead on a couple of threads: a batch is one gather from memory, and a deep prefetch of
# large batches would hold gigabytes.
_READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=8)
_AUGMENT_SEED_SALT = 0x5EED  # keeps the augmentation stream apart from the shuffle's seed
# Random erasing's rectangle, as Zhong et al. (2017) draw it: area 2-40% of the image, aspect ratio
# (height / width) between 0.3 and 1 / 0.3; a draw that does not fit is drawn again, up to this many times.
_ERASE_AREA = (0.02, 0.4)
_ERASE_ASPECT = 0.3
_ERASE_TRIES = 10


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 pixels 0..255 -> float32 in [-1, 1] (`x / 127.5 - 1`), the range every model here takes."""
    return np.asarray(images, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)


@dataclasses.dataclass(frozen=True)
class Augment:
    """Training augmentation; crops and flips apply identically to an image and its mask.

    `crop_padding`: pad each side by this many pixels, black for images (-1 after `to_float`) and
    background (0) for masks, then crop a random window of the original size. `flip`: mirror
    left-right with probability 1/2. `erase_probability`: with this probability, fill a random
    rectangle of the image with random pixels (random erasing, Zhong et al. 2017; images with a label
    only: a mask would no longer describe the erased pixels).
    """

    crop_padding: int = 0
    flip: bool = False
    erase_probability: float = 0.0

    def __post_init__(self) -> None:
        if self.crop_padding < 0:
            raise UserError(
                f"crop_padding must be >= 0, not {self.crop_padding}; set it to 0 to disable crops."
            )
        if not 0.0 <= self.erase_probability <= 1.0:
            raise UserError(
                f"erase_probability must be in [0, 1], not {self.erase_probability}; 0 disables erasing."
            )

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.flip or self.erase_probability > 0


def num_examples(arrays: dict[str, np.ndarray]) -> int:
    """How many examples `arrays` holds; all its arrays must agree."""
    lengths = {key: len(value) for key, value in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"arrays need equally long examples and targets, got lengths {lengths}")
    return next(iter(lengths.values()))


def crop_and_flip(
    x: np.ndarray, padding: int, tops: np.ndarray, lefts: np.ndarray, flips: np.ndarray
) -> np.ndarray:
    """Per-example windows of `x` `[B, H, W, ...]` after zero padding, optionally mirrored; same shape.

    Row `b` is the `H x W` window at (`tops[b]`, `lefts[b]`) of the padded array (offsets in
    0..2*padding), read right to left where `flips[b]`. One gather for the whole batch.
    """
    B, H, W = x.shape[:3]
    if padding:
        x = np.pad(x, [(0, 0), (padding, padding), (padding, padding)] + [(0, 0)] * (x.ndim - 3))
    rows_BH = tops[:, None] + np.arange(H)
    cols_BW = lefts[:, None] + np.arange(W)
    cols_BW = np.where(flips[:, None], cols_BW[:, ::-1], cols_BW)
    return x[np.arange(B)[:, None, None], rows_BH[:, :, None], cols_BW[:, None, :]]


def erasing_boxes(
    rng: np.random.Generator, size: int, height: int, width: int, probability: float
) -> np.ndarray:
    """`[size, 4]` int rectangles (top, left, height, width) to erase, drawn as random erasing draws
    them (`_ERASE_AREA`, `_ERASE_ASPECT`); height and width are 0 for an image left whole (with
    probability 1 - `probability`, or when no draw fit)."""
    tries = (size, _ERASE_TRIES)
    area = rng.uniform(*_ERASE_AREA, size=tries) * height * width
    aspect = rng.uniform(_ERASE_ASPECT, 1 / _ERASE_ASPECT, size=tries)
    box_h = np.rint(np.sqrt(area * aspect)).astype(np.int64)
    box_w = np.rint(np.sqrt(area / aspect)).astype(np.int64)
    fits = (box_h < height) & (box_w < width)
    first = np.argmax(fits, axis=1)  # the first draw that fits (0 where none does, masked below)
    rows = np.arange(size)
    erase = (rng.random(size) < probability) & fits[rows, first]
    box_h, box_w = box_h[rows, first] * erase, box_w[rows, first] * erase
    tops = rng.integers(0, height - box_h + 1)
    lefts = rng.integers(0, width - box_w + 1)
    return np.stack([tops, lefts, box_h, box_w], axis=1)


def erase(x: np.ndarray, boxes: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """`x` `[B, H, W, C]` with each image's box (`erasing_boxes`' rows) replaced by `noise` (same shape)."""
    top, left, box_h, box_w = (boxes[:, i, None] for i in range(4))
    rows_BH = np.arange(x.shape[1]) - top
    cols_BW = np.arange(x.shape[2]) - left
    in_rows_BH = (rows_BH >= 0) & (rows_BH < box_h)
    in_cols_BW = (cols_BW >= 0) & (cols_BW < box_w)
    inside_BHW = in_rows_BH[:, :, None] & in_cols_BW[:, None, :]
    return np.where(inside_BHW[..., None], noise, x)


class Batch:
    """Global batch of example indices `[G]` (and a generator, when augmenting) -> this process's batch.

    The process keeps rows `p, p + k, ...` of the global batch (`p` of `k` processes), so the processes'
    batches together form the global one. Augmentation parameters are drawn for all `G` rows before the
    process takes its share, so a batch does not depend on how many processes share it. A small class
    (not a closure) so the pipeline stays picklable for Grain's worker processes.
    """

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        augment: Augment | None = None,
        process_index: int = 0,
        process_count: int = 1,
    ):
        self.arrays = arrays
        self.augment = augment if augment is not None and augment.active else None
        if self.augment is not None and self.augment.erase_probability > 0 and "mask" in arrays:
            raise UserError(
                "augment.erase_probability erases image pixels that a mask would still label; "
                "set --config.augment.erase_probability=0 for segmentation"
            )
        self.process_index = process_index
        self.process_count = process_count

    def __call__(
        self, indices_G: np.ndarray, rng: np.random.Generator | None = None
    ) -> dict[str, np.ndarray]:
        mine = slice(self.process_index, None, self.process_count)
        batch = {key: value[np.asarray(indices_G)[mine]] for key, value in self.arrays.items()}
        if self.augment is not None:
            assert rng is not None, "an augmenting Batch needs a generator: use it with random_map"
            batch = self._augment(batch, rng, len(indices_G), mine)
        return finish(batch)

    def _augment(
        self, batch: dict[str, np.ndarray], rng: np.random.Generator, size: int, mine: slice
    ) -> dict[str, np.ndarray]:
        assert self.augment is not None
        pad = self.augment.crop_padding
        tops = rng.integers(0, 2 * pad + 1, size=size)[mine]
        lefts = rng.integers(0, 2 * pad + 1, size=size)[mine]
        flips = (rng.random(size) < 0.5)[mine] if self.augment.flip else np.zeros(len(tops), bool)
        # Only spatial arrays move; uint8 images pad with 0, which `to_float` turns into -1 (black).
        batch = {
            key: crop_and_flip(value, pad, tops, lefts, flips) if value.ndim >= 3 else value
            for key, value in batch.items()
        }
        if self.augment.erase_probability > 0:  # drawn after the crops and flips, which stay as they were
            image = batch["image"]
            boxes = erasing_boxes(rng, size, *image.shape[1:3], self.augment.erase_probability)[mine]
            noise = rng.integers(0, 256, size=(size, *image.shape[1:]), dtype=np.uint8)[mine]
            batch["image"] = erase(image, boxes, noise)
        return batch


def finish(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """uint8 images -> float32 in [-1, 1]; every other array (labels, masks) -> int32."""
    return {
        key: to_float(value) if key == "image" else value.astype(np.int32) for key, value in batch.items()
    }


def train_dataset(
    arrays: dict[str, np.ndarray], global_batch_size: int, seed: int, augment: Augment | None = None
) -> grain.IterDataset:
    """Endless shuffled batches of this process's share of each global batch of `arrays`.

    Epochs follow each other with a fresh permutation, and a batch may span two epochs. Batches are
    `{"image": float32 [B, H, W, C], "label": int32 [B]}` or `{..., "mask": int32 [B, H, W]}` with
    `B = global_batch_size // process_count`. Augmentation of the batch at position `i` of the stream is
    a function of (`seed`, `i`) alone, so the iterator state restores it exactly.
    """
    n = num_examples(arrays)
    if n == 0:
        raise UserError("The training split is empty; choose a data set with examples.")
    per_process_batch_size(global_batch_size, jax.process_count())  # checks that it divides evenly
    indices = grain.MapDataset.range(n).shuffle(seed=seed % 2**32).repeat()
    # Batching the indices first turns the per-example gathers into one vectorised gather per batch.
    batches = indices.batch(global_batch_size, drop_remainder=True)
    to_batch = Batch(arrays, augment, jax.process_index(), jax.process_count())
    if to_batch.augment is None:
        batches = batches.map(to_batch)
    else:
        batches = batches.random_map(to_batch, seed=(seed + _AUGMENT_SEED_SALT) % 2**32)
    return batches.to_iter_dataset(_READ_OPTIONS)


class GeneratedBatch:
    """Position in the stream (and its generator) -> this process's share of a freshly made global batch:
    `make(rng, size)` returns `size` examples as uint8 / int arrays, which are then augmented and split
    like a batch read from memory. A small class (not a closure), so the pipeline stays picklable."""

    def __init__(
        self,
        make: Callable[[np.random.Generator, int], dict[str, np.ndarray]],
        global_batch_size: int,
        augment: Augment | None = None,
    ):
        self.make = make
        self.global_batch_size = global_batch_size
        self.augment = augment

    def __call__(self, position: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        del position  # the batch is a function of `rng`, which Grain derives from the seed and position
        arrays = self.make(rng, self.global_batch_size)
        to_batch = Batch(arrays, self.augment, jax.process_index(), jax.process_count())
        return to_batch(np.arange(self.global_batch_size), rng)


def generated_train_dataset(
    make: Callable[[np.random.Generator, int], dict[str, np.ndarray]],
    global_batch_size: int,
    seed: int,
    augment: Augment | None = None,
) -> grain.IterDataset:
    """Endless batches that are made, not read: the batch at position `i` is `make(rng_i, size)` with
    `rng_i` a function of (`seed`, `i`) alone, so no example repeats and the iterator state (a position)
    restores the exact next batches. Batches have the same form as `train_dataset`'s."""
    per_process_batch_size(global_batch_size, jax.process_count())  # checks that it divides evenly
    positions = grain.MapDataset.range(2**62)  # lazy: endless for any run
    batches = positions.random_map(GeneratedBatch(make, global_batch_size, augment), seed=seed % 2**32)
    return batches.to_iter_dataset(_READ_OPTIONS)


def num_eval_batches(n_examples: int, batch_size: int) -> int:
    """How many batches `eval_batches` yields for `n_examples` (without `max_batches`)."""
    return -(-n_examples // batch_size)


def eval_batches(
    arrays: dict[str, np.ndarray], global_batch_size: int, max_batches: int | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Deterministic batches covering every example of `arrays` exactly once, in order.

    Global batch `b` holds examples `b * G ... (b + 1) * G - 1`; past the end, every array is 0 and the
    float32 `"weight"` `[B]` is 0 (1 for real rows), so a weighted mean over batches is exact. Each
    process gets its own consecutive block of rows (`B = G // process_count`), as `lm_eval_batches` does.
    """
    n = num_examples(arrays)
    n_batches = num_eval_batches(n, global_batch_size)
    if max_batches is not None:
        n_batches = min(n_batches, max_batches)
    local = per_process_batch_size(global_batch_size, jax.process_count())
    rows = np.arange(jax.process_index() * local, (jax.process_index() + 1) * local)
    for b in range(n_batches):
        index_B = b * global_batch_size + rows
        valid_B = index_B < n
        batch = finish({key: value[np.minimum(index_B, n - 1)] for key, value in arrays.items()})
        batch = {key: _zero_invalid(value, valid_B) for key, value in batch.items()}
        yield batch | {"weight": valid_B.astype(np.float32)}


def _zero_invalid(x: np.ndarray, valid_B: np.ndarray) -> np.ndarray:
    return np.where(valid_B.reshape((-1,) + (1,) * (x.ndim - 1)), x, np.zeros((), x.dtype))
