"""Image data: the Fashion-MNIST, digits and fashion_scenes builders, `catalog.arrays`, and the Grain
image pipelines.

The builders read the real sources (the Debian package `dataset-fashion-mnist`, scikit-learn's digits)
and are built once per session into a fresh data dir; all three take a few seconds.
"""

from __future__ import annotations

import gzip
import pathlib
import time

import grain
import numpy as np
import pytest

from aigc_jax.data import catalog, images
from aigc_jax.data.builders import fashion_mnist, fashion_scenes
from aigc_jax.errors import UserError

needs_fashion_mnist = pytest.mark.skipif(
    not (fashion_mnist.FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason="apt-get install dataset-fashion-mnist",
)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """One fresh data dir for the session; each data set is built into it on first use."""
    return tmp_path_factory.mktemp("image_datasets")


@pytest.fixture(scope="session")
def fmnist(data_dir) -> dict[str, dict[str, np.ndarray]]:
    return {
        split: catalog.arrays("fashion_mnist", split, data_dir) for split in ("train", "validation", "test")
    }


# --- fashion_mnist -------------------------------------------------------------------------------


@needs_fashion_mnist
def test_fashion_mnist_builds_from_the_debian_files(data_dir, fmnist):
    builder = fashion_mnist.FashionMnistDebian(data_dir=data_dir)
    sizes = {split: builder.info.splits[split].num_examples for split in ("train", "validation", "test")}
    assert sizes == {"train": 55_000, "validation": 5_000, "test": 10_000}
    assert builder.name == "fashion_mnist_debian" and builder.info.citation
    assert (data_dir / "fashion_mnist_debian" / "1.0.0" / "LICENSE").read_text().startswith("MIT")
    for split, size in sizes.items():
        assert fmnist[split]["image"].shape == (size, 28, 28, 1) and fmnist[split]["image"].dtype == np.uint8
        assert fmnist[split]["label"].shape == (size,) and fmnist[split]["label"].dtype == np.int32
    assert np.bincount(fmnist["test"]["label"]).tolist() == [1_000] * 10


@needs_fashion_mnist
def test_fashion_mnist_train_and_validation_partition_the_idx_training_items(fmnist):
    idx_images, idx_labels = fashion_mnist.load_idx("train")
    train, validation = fashion_mnist.carve_validation(60_000, 5_000)
    assert len(np.intersect1d(train, validation)) == 0
    np.testing.assert_array_equal(np.union1d(train, validation), np.arange(60_000))
    for split, keep in (("train", train), ("validation", validation)):  # the IDX order is kept
        np.testing.assert_array_equal(fmnist[split]["image"][..., 0], idx_images[keep])
        np.testing.assert_array_equal(fmnist[split]["label"], idx_labels[keep])
    test_images, _ = fashion_mnist.load_idx("t10k")
    np.testing.assert_array_equal(fmnist["test"]["image"][..., 0], test_images)


def test_missing_fashion_mnist_files_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv(fashion_mnist.FASHION_MNIST_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist") as e:
        catalog.prepare("fashion_mnist", tmp_path / "datasets")
    assert "tfds_fashion_mnist" in str(e.value)


def test_read_idx_checks_the_magic_number(tmp_path):
    good, bad = tmp_path / "good.gz", tmp_path / "bad.gz"
    with gzip.open(good, "wb") as f:  # uint8, 2 dims: 2 x 3
        f.write(bytes([0, 0, 0x08, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes(range(6)))
    np.testing.assert_array_equal(fashion_mnist.read_idx(good), np.arange(6, dtype=np.uint8).reshape(2, 3))
    with gzip.open(bad, "wb") as f:
        f.write(b"PK\x03\x04" + bytes(10))
    with pytest.raises(UserError, match="not an IDX file"):
        fashion_mnist.read_idx(bad)


# --- digits --------------------------------------------------------------------------------------


def test_digits_builds_from_scikit_learn(data_dir):
    got = {split: catalog.arrays("digits", split, data_dir) for split in ("train", "validation", "test")}
    assert {split: len(a["label"]) for split, a in got.items()} == {
        "train": 1257,
        "validation": 180,
        "test": 360,
    }
    image = np.concatenate([a["image"] for a in got.values()])
    assert image.shape[1:] == (8, 8, 1) and image.dtype == np.uint8
    assert image.min() == 0 and image.max() == 255
    assert np.isin(image, [round(v * 255 / 16) for v in range(17)]).all()
    assert set(got["test"]["label"].tolist()) == set(range(10))


# --- fashion_scenes ------------------------------------------------------------------------------


def _square_items(num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """One 28x28 item per class: a faint rim (32, never pasted) around a square of value 40 + 20 c."""
    labels = np.arange(num_classes)
    items = np.full((num_classes, 28, 28), 32, dtype=np.uint8)
    items[:, 1:-1, 1:-1] = (40 + 20 * labels)[:, None, None]
    return items, labels


def test_compose_scenes_is_deterministic():
    items, labels = _square_items()
    first = fashion_scenes.compose_scenes(items, labels, num_scenes=50, seed=7)
    again = fashion_scenes.compose_scenes(items[..., None], labels, num_scenes=50, seed=7)
    other = fashion_scenes.compose_scenes(items, labels, num_scenes=50, seed=8)
    assert first[0].shape == (50, 64, 64, 1) and first[1].shape == (50, 64, 64)
    assert first[0].dtype == first[1].dtype == np.uint8
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[1], other[1])


def test_compose_scenes_masks_carry_the_pasted_classes():
    items, labels = _square_items()
    image, mask = fashion_scenes.compose_scenes(items, labels, num_scenes=200, seed=0)
    image = image[..., 0]
    np.testing.assert_array_equal(mask == 0, image == 0)  # background exactly where nothing was pasted
    fg = mask > 0
    np.testing.assert_array_equal(image[fg], 40 + 20 * (mask[fg].astype(int) - 1))  # the item's class
    assert not (image == 32).any()  # faint pixels are never pasted
    inner = 26 * 26  # the pasted part of one item
    per_scene = fg.sum(axis=(1, 2))
    assert (per_scene >= inner).all() and (per_scene <= 4 * inner).all()
    classes_per_scene = [len(np.unique(m[m > 0])) for m in mask]
    assert min(classes_per_scene) >= 1 and max(classes_per_scene) == 4
    # The last item pasted is whole: each scene holds a complete 26x26 square of one class.
    windows = np.lib.stride_tricks.sliding_window_view(mask, (26, 26), axis=(1, 2))
    whole = (windows == windows[..., :1, :1]).all(axis=(-2, -1)) & (windows[..., 0, 0] > 0)
    assert whole.any(axis=(1, 2)).all()


@needs_fashion_mnist
def test_fashion_scenes_builds(data_dir):
    builder = fashion_scenes.FashionScenes(data_dir=catalog.prepare("fashion_scenes", data_dir))
    sizes = {split: builder.info.splits[split].num_examples for split in ("train", "validation", "test")}
    assert sizes == {"train": 12_000, "validation": 1_000, "test": 2_000}
    got = catalog.arrays("fashion_scenes", "validation", data_dir)
    assert set(got) == {"image", "mask"}
    assert got["image"].shape == (1_000, 64, 64, 1) and got["mask"].shape == (1_000, 64, 64)
    assert got["mask"].dtype == np.uint8 and got["mask"].max() == 10
    np.testing.assert_array_equal(got["mask"] > 0, got["image"][..., 0] > 0)
    assert got["image"][got["mask"] > 0].min() > fashion_scenes.FOREGROUND_THRESHOLD
    # Validation scenes are composed from the validation items only, by their own seed.
    items = fashion_mnist.split_items()["validation"]
    want = fashion_scenes.compose_scenes(
        *items, num_scenes=1_000, seed=fashion_scenes.SPLIT_SEEDS["validation"]
    )
    np.testing.assert_array_equal(got["image"], want[0])
    np.testing.assert_array_equal(got["mask"], want[1])


# --- catalog -------------------------------------------------------------------------------------


def test_catalogue_arrays_fail_fast_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_JAX_OFFLINE", "1")
    start = time.monotonic()
    for split in ("train", "validation", "test"):
        with pytest.raises(UserError, match=r"--config\.data\.name=fashion_mnist\b"):
            catalog.arrays("tfds_fashion_mnist", split, tmp_path)
    assert time.monotonic() - start < 5
    assert catalog.get_spec("tfds_fashion_mnist").tfds_name == "fashion_mnist"
    assert catalog.get_spec("fashion_mnist").tfds_name == "fashion_mnist"  # defaults to the name


def test_arrays_errors(data_dir):
    with pytest.raises(UserError, match="train, validation, test"):
        catalog.arrays("digits", "nope", data_dir)
    with pytest.raises(UserError, match="train, validation, test"):
        catalog.arrays("tfds_fashion_mnist", "train[:10]", data_dir)
    with pytest.raises(UserError, match="text data set"):
        catalog.arrays("tiny_shakespeare", "train", data_dir)


# --- pipelines -----------------------------------------------------------------------------------


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
    x = images.to_float(np.array([0, 127, 255], dtype=np.uint8))
    assert x.dtype == np.float32 and x[0] == -1 and x[-1] == 1 and abs(x[1]) < 0.01


def test_train_batches_shapes_and_dtypes():
    arrays = {"image": np.full((10, 28, 28, 1), 255, np.uint8), "label": np.arange(10, dtype=np.int64)}
    batch = next(iter(images.train_dataset(arrays, global_batch_size=4, seed=0)))
    assert set(batch) == {"image", "label"}
    assert batch["image"].shape == (4, 28, 28, 1) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (4,) and batch["label"].dtype == np.int32
    assert (batch["image"] == 1).all()
    toy = next(
        iter(images.train_dataset(_toy(), 4, seed=0, augment=images.Augment(crop_padding=2, flip=True)))
    )
    assert toy["mask"].shape == (4, 6, 6) and toy["mask"].dtype == np.int32
    assert toy["image"].min() >= -1 and toy["image"].max() <= 1
    assert images.num_examples(_toy()) == 12


def test_train_epochs_cover_every_example_in_a_new_order():
    it = iter(images.train_dataset(_toy(), global_batch_size=4, seed=0))
    epochs = [[i for _ in range(3) for i in _ids(next(it))] for _ in range(3)]
    for ids in epochs:
        assert sorted(ids) == list(range(12))
    assert epochs[0] != epochs[1] != epochs[2]


def test_train_batches_are_reproducible_and_resume_exactly():
    augment = images.Augment(crop_padding=2, flip=True)
    ds = images.train_dataset(_toy(), global_batch_size=4, seed=3, augment=augment)
    it = iter(ds)
    assert isinstance(it, grain.DatasetIterator)
    for _ in range(4):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(3)]
    fresh = iter(images.train_dataset(_toy(), global_batch_size=4, seed=3, augment=augment))
    for _ in range(4):
        next(fresh)
    resumed = iter(ds)
    resumed.set_state(state)
    for want in expected:
        for got in (next(fresh), next(resumed)):
            for key in want:
                np.testing.assert_array_equal(got[key], want[key])
    other = iter(images.train_dataset(_toy(), global_batch_size=4, seed=4, augment=augment))
    assert any(not np.array_equal(next(other)["image"], next(it)["image"]) for _ in range(3))


def test_augmentation_moves_image_and_mask_together():
    toy = _toy(n=64)
    it = iter(images.train_dataset(toy, 16, seed=0, augment=images.Augment(crop_padding=2, flip=True)))
    batches = [next(it) for _ in range(8)]
    originals = toy["image"][..., 0]
    moved = 0
    for batch in batches:
        pixels = _to_uint8(batch["image"][..., 0])
        np.testing.assert_array_equal(batch["mask"], pixels % 7)  # same crop and flip, 0 padding
        moved += sum(not _is_one_of(p, originals) for p in pixels)
    assert moved > 64  # most of the 128 images were shifted or mirrored
    assert any((b["image"] == -1).any() for b in batches)  # padding shows as black

    flip_only = iter(images.train_dataset(toy, 16, seed=0, augment=images.Augment(flip=True)))
    pixels = np.concatenate([_to_uint8(next(flip_only)["image"][..., 0]) for _ in range(4)])
    kept = sum(_is_one_of(p, originals) for p in pixels)
    mirrored = sum(_is_one_of(p[:, ::-1], originals) for p in pixels)
    assert kept + mirrored == 64 and kept > 8 and mirrored > 8


def _is_one_of(image: np.ndarray, candidates: np.ndarray) -> bool:
    return bool((candidates == image).all(axis=(1, 2)).any())


def test_train_processes_share_one_global_batch(monkeypatch):
    augment = images.Augment(crop_padding=1, flip=True)
    global_batch = next(iter(images.train_dataset(_toy(), 8, seed=2, augment=augment)))
    monkeypatch.setattr(images.jax, "process_count", lambda: 2)
    local = []
    for p in range(2):
        monkeypatch.setattr(images.jax, "process_index", lambda p=p: p)
        local.append(next(iter(images.train_dataset(_toy(), 8, seed=2, augment=augment))))
    assert local[0]["image"].shape == (4, 6, 6, 1)
    for key in global_batch:
        stacked = np.stack([batch[key] for batch in local], axis=1)
        np.testing.assert_array_equal(stacked.reshape(global_batch[key].shape), global_batch[key])
    with pytest.raises(UserError, match="multiple of 2"):
        images.train_dataset(_toy(), 7, seed=2)


@pytest.mark.parametrize("n", [1, 8, 10])
def test_eval_batches_cover_every_example_once(n):
    toy = {"image": _toy(n)["image"], "label": np.arange(n)}
    batches = list(images.eval_batches(toy, global_batch_size=4))
    assert len(batches) == images.num_eval_batches(n, 4) == -(-n // 4)
    for batch in batches:
        assert batch["image"].shape == (4, 6, 6, 1) and batch["weight"].shape == (4,)
        assert batch["weight"].dtype == np.float32 and batch["label"].dtype == np.int32
    weight = np.concatenate([b["weight"] for b in batches])
    assert weight.sum() == n and (weight[:n] == 1).all()
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches])[:n], np.arange(n))
    image = np.concatenate([b["image"] for b in batches])
    np.testing.assert_array_equal(image[:n], images.to_float(toy["image"]))
    assert (image[n:] == 0).all()
    assert len(list(images.eval_batches(toy, 4, max_batches=1))) == 1


def test_eval_processes_take_consecutive_rows(monkeypatch):
    toy = {"image": _toy(10)["image"], "label": np.arange(10)}
    monkeypatch.setattr(images.jax, "process_count", lambda: 2)
    labels = []
    for p in range(2):
        monkeypatch.setattr(images.jax, "process_index", lambda p=p: p)
        labels.append([b["label"].tolist() for b in images.eval_batches(toy, 4)])
    assert labels == [[[0, 1], [4, 5], [8, 9]], [[2, 3], [6, 7], [0, 0]]]
