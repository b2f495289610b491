"""The in-memory array pipelines (`data/in_memory.py`): batch shapes and dtypes, epochs, exact resume,
augmentation of images and masks together, random erasing, splitting across processes, and evaluation
coverage."""

from __future__ import annotations

import numpy as np
import pytest

from aigc_jax.data import in_memory
from aigc_jax.errors import UserError
from tests.helpers import assert_batches_equal, assert_resumes_exactly


def _toy(n: int = 12, size: int = 6) -> dict[str, np.ndarray]:
    """Images whose corner pixel is the example id; masks a pointwise function of the image (0 -> 0)."""
    rng = np.random.default_rng(0)
    image = rng.integers(1, 256, size=(n, size, size, 1), dtype=np.uint8)
    image[:, 0, 0, 0] = np.arange(n) + 1
    return {"image": image, "mask": image[..., 0] % 7}


def _ids(batch: dict[str, np.ndarray]) -> list[int]:
    return (np.rint((batch["image"][:, 0, 0, 0] + 1) * 127.5).astype(int) - 1).tolist()


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.rint((x + 1) * 127.5).astype(np.uint8)


def test_to_float_range():
    x = in_memory.to_float(np.array([0, 127, 255], dtype=np.uint8))
    assert x.dtype == np.float32 and x[0] == -1 and x[-1] == 1 and abs(x[1]) < 0.01


def test_train_batches_shapes_and_dtypes():
    arrays = {"image": np.full((10, 28, 28, 1), 255, np.uint8), "label": np.arange(10, dtype=np.int64)}
    batch = next(iter(in_memory.train_dataset(arrays, global_batch_size=4, seed=0)))
    assert set(batch) == {"image", "label"}
    assert batch["image"].shape == (4, 28, 28, 1) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (4,) and batch["label"].dtype == np.int32
    assert (batch["image"] == 1).all()
    toy = next(
        iter(in_memory.train_dataset(_toy(), 4, seed=0, augment=in_memory.Augment(crop_padding=2, flip=True)))
    )
    assert toy["mask"].shape == (4, 6, 6) and toy["mask"].dtype == np.int32
    assert toy["image"].min() >= -1 and toy["image"].max() <= 1
    assert in_memory.num_examples(_toy()) == 12


def test_train_epochs_cover_every_example_in_a_new_order():
    it = iter(in_memory.train_dataset(_toy(), global_batch_size=4, seed=0))
    epochs = [[i for _ in range(3) for i in _ids(next(it))] for _ in range(3)]
    for ids in epochs:
        assert sorted(ids) == list(range(12))
    assert epochs[0] != epochs[1] != epochs[2]


def test_train_batches_are_reproducible_and_resume_exactly():
    augment = in_memory.Augment(crop_padding=2, flip=True)
    ds = in_memory.train_dataset(_toy(), global_batch_size=4, seed=3, augment=augment)
    it, expected = assert_resumes_exactly(ds, skip=4, take=3)
    fresh = iter(in_memory.train_dataset(_toy(), global_batch_size=4, seed=3, augment=augment))
    for _ in range(4):
        next(fresh)
    for want in expected:
        assert_batches_equal(next(fresh), want)
    other = iter(in_memory.train_dataset(_toy(), global_batch_size=4, seed=4, augment=augment))
    assert any(not np.array_equal(next(other)["image"], next(it)["image"]) for _ in range(3))


def _made(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """`n` toy examples drawn from `rng`: a `make` for `generated_train_dataset`."""
    image = rng.integers(0, 256, size=(n, 6, 6, 1), dtype=np.uint8)
    return {"image": image, "mask": image[..., 0] % 7}


def test_generated_batches_are_new_reproducible_and_resume_exactly():
    augment = in_memory.Augment(crop_padding=1, flip=True)
    ds = in_memory.generated_train_dataset(_made, global_batch_size=4, seed=3, augment=augment)
    it, expected = assert_resumes_exactly(ds, skip=4, take=3)
    assert expected[0]["image"].shape == (4, 6, 6, 1) and expected[0]["image"].dtype == np.float32
    assert expected[0]["mask"].shape == (4, 6, 6) and expected[0]["mask"].dtype == np.int32
    assert not np.array_equal(expected[0]["image"], expected[1]["image"])
    fresh = iter(in_memory.generated_train_dataset(_made, global_batch_size=4, seed=3, augment=augment))
    for _ in range(4):
        next(fresh)
    for want in expected:
        assert_batches_equal(next(fresh), want)
    other = iter(in_memory.generated_train_dataset(_made, global_batch_size=4, seed=4, augment=augment))
    assert not np.array_equal(next(other)["image"], next(it)["image"])


def test_augmentation_moves_image_and_mask_together():
    toy = _toy(n=64)
    it = iter(in_memory.train_dataset(toy, 16, seed=0, augment=in_memory.Augment(crop_padding=2, flip=True)))
    batches = [next(it) for _ in range(8)]
    originals = toy["image"][..., 0]
    moved = 0
    for batch in batches:
        pixels = _to_uint8(batch["image"][..., 0])
        np.testing.assert_array_equal(batch["mask"], pixels % 7)  # same crop and flip, 0 padding
        moved += sum(not _is_one_of(p, originals) for p in pixels)
    assert moved > 64  # most of the 128 images were shifted or mirrored
    assert any((b["image"] == -1).any() for b in batches)  # padding shows as black

    flip_only = iter(in_memory.train_dataset(toy, 16, seed=0, augment=in_memory.Augment(flip=True)))
    pixels = np.concatenate([_to_uint8(next(flip_only)["image"][..., 0]) for _ in range(4)])
    kept = sum(_is_one_of(p, originals) for p in pixels)
    mirrored = sum(_is_one_of(p[:, ::-1], originals) for p in pixels)
    assert kept + mirrored == 64 and kept > 8 and mirrored > 8


def test_random_erasing_boxes_fit_and_follow_the_probability():
    rng = np.random.default_rng(0)
    for probability in (0.5, 1.0):
        top, left, height, width = in_memory.erasing_boxes(rng, 4000, 28, 20, probability).T
        erased = height > 0
        assert abs(erased.mean() - probability) < 0.03
        assert ((width > 0) == erased).all() and (top + height <= 28).all() and (left + width <= 20).all()
        area = height[erased] * width[erased] / (28 * 20)
        assert area.min() > 0.01 and area.max() < 0.45 and 0.15 < area.mean() < 0.25  # U(0.02, 0.4)


def test_random_erasing_replaces_one_rectangle_and_keeps_the_flips():
    rng = np.random.default_rng(1)
    arrays = {"image": rng.integers(0, 256, (32, 28, 28, 1), np.uint8), "label": np.arange(32)}
    flipped = in_memory.Batch(arrays, in_memory.Augment(flip=True))(np.arange(32), np.random.default_rng(5))
    erased = in_memory.Batch(arrays, in_memory.Augment(flip=True, erase_probability=1.0))(
        np.arange(32), np.random.default_rng(5)
    )
    np.testing.assert_array_equal(erased["label"], flipped["label"])
    for before, after in zip(flipped["image"][..., 0], erased["image"][..., 0], strict=True):
        rows, cols = np.nonzero(before != after)
        assert len(rows) > 0  # every image erased at probability 1 (a box fits 28 x 28 almost always)
        box_area = (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
        assert len(rows) >= 0.95 * box_area  # one filled rectangle (a noise pixel can equal the old one)
        assert box_area <= 0.45 * 28 * 28


def test_random_erasing_is_refused_with_masks_and_out_of_range():
    with pytest.raises(UserError, match="erase_probability=0"):
        in_memory.Batch(_toy(), in_memory.Augment(erase_probability=0.5))
    with pytest.raises(UserError, match=r"in \[0, 1\]"):
        in_memory.Augment(erase_probability=1.5)


def _is_one_of(image: np.ndarray, candidates: np.ndarray) -> bool:
    return bool((candidates == image).all(axis=(1, 2)).any())


def test_train_processes_share_one_global_batch(monkeypatch):
    augment = in_memory.Augment(crop_padding=1, flip=True)
    global_batch = next(iter(in_memory.train_dataset(_toy(), 8, seed=2, augment=augment)))
    monkeypatch.setattr(in_memory.jax, "process_count", lambda: 2)
    local = []
    for p in range(2):
        monkeypatch.setattr(in_memory.jax, "process_index", lambda p=p: p)
        local.append(next(iter(in_memory.train_dataset(_toy(), 8, seed=2, augment=augment))))
    assert local[0]["image"].shape == (4, 6, 6, 1)
    for key in global_batch:
        stacked = np.stack([batch[key] for batch in local], axis=1)
        np.testing.assert_array_equal(stacked.reshape(global_batch[key].shape), global_batch[key])
    with pytest.raises(UserError, match="multiple of 2"):
        in_memory.train_dataset(_toy(), 7, seed=2)


@pytest.mark.parametrize("n", [1, 8, 10])
def test_eval_batches_cover_every_example_once(n):
    toy = {"image": _toy(n)["image"], "label": np.arange(n)}
    batches = list(in_memory.eval_batches(toy, global_batch_size=4))
    assert len(batches) == in_memory.num_eval_batches(n, 4) == -(-n // 4)
    for batch in batches:
        assert batch["image"].shape == (4, 6, 6, 1) and batch["weight"].shape == (4,)
        assert batch["weight"].dtype == np.float32 and batch["label"].dtype == np.int32
    weight = np.concatenate([b["weight"] for b in batches])
    assert weight.sum() == n and (weight[:n] == 1).all()
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches])[:n], np.arange(n))
    image = np.concatenate([b["image"] for b in batches])
    np.testing.assert_array_equal(image[:n], in_memory.to_float(toy["image"]))
    assert (image[n:] == 0).all()
    assert len(list(in_memory.eval_batches(toy, 4, max_batches=1))) == 1


def test_eval_processes_take_consecutive_rows(monkeypatch):
    toy = {"image": _toy(10)["image"], "label": np.arange(10)}
    monkeypatch.setattr(in_memory.jax, "process_count", lambda: 2)
    labels = []
    for p in range(2):
        monkeypatch.setattr(in_memory.jax, "process_index", lambda p=p: p)
        labels.append([b["label"].tolist() for b in in_memory.eval_batches(toy, 4)])
    assert labels == [[[0, 1], [4, 5], [8, 9]], [[2, 3], [6, 7], [0, 0]]]
