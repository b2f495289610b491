"""Image data: the Fashion-MNIST, digits and fashion_scenes builders and `catalog.arrays` (their
pipelines: tests/test_in_memory.py).

The builders read the real sources (the Debian package `dataset-fashion-mnist`, scikit-learn's digits)
and are built once per session into a fresh data dir; all three take a few seconds.
"""

from __future__ import annotations

import gzip
import os
import pathlib
import time

import numpy as np
import pytest

from aigc_jax.data import catalog
from aigc_jax.data.builders import fashion_mnist, fashion_scenes
from aigc_jax.errors import UserError

# Skipped only off CI, where the Debian package may be missing; CI installs it, so there these must run.
needs_fashion_mnist = pytest.mark.skipif(
    not (fashion_mnist.source_dir() / "t10k-labels-idx1-ubyte.gz").is_file() and not os.environ.get("CI"),
    reason="apt-get install dataset-fashion-mnist (or set AIGC_JAX_FASHION_MNIST_DIR)",
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
    assert sizes == {"train": 60_000, "validation": 1_000, "test": 2_000}
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
