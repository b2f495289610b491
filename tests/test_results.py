"""Result files: the numbers plus how, where and when they were made."""

import importlib.util
import json
import pathlib
import subprocess
import sys

from aigc_jax import results
from aigc_jax.systems import seqgan


def test_a_result_file_records_its_fields_and_provenance(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_JAX_GIT_COMMIT", "0123abc")  # a copy of the tree run where .git is stale
    monkeypatch.setattr(results, "_COMMIT_AT_START", results.git_commit())  # as if imported now
    record = results.write(tmp_path / "r.json", metrics={"accuracy": 0.5})
    assert json.loads((tmp_path / "r.json").read_text()) == record
    assert record["metrics"] == {"accuracy": 0.5} and record["git_commit"] == "0123abc"
    assert "git_commit_at_write" not in record
    assert record["wall_seconds"] >= 0 and record["hardware"] and record["command"] and record["date"]


def test_the_cpu_is_named_with_its_generation():
    """Cloud CPUs often say only 'AMD EPYC'; family, model and AVX-512 tell their generations apart."""
    cpuinfo = (
        "processor\t: 0\nmodel name\t: AMD EPYC\ncpu family\t: 26\nmodel\t\t: 2\n"
        "flags\t\t: fpu avx2 avx512f\n\nprocessor\t: 1\nmodel name\t: another\n"
    )
    assert results.cpu_model(cpuinfo) == "AMD EPYC (family 26, model 2, AVX-512)"
    assert results.cpu_model("model name\t: Intel(R) Xeon(R)\nflags\t: fpu avx2\n") == "Intel(R) Xeon(R)"


def test_a_result_file_names_the_commit_its_run_started_from(tmp_path, monkeypatch):
    """A commit made while a long run trains is not the code it ran: the file keeps the commit at the
    script's start and adds the one at writing."""
    monkeypatch.setattr(results, "_COMMIT_AT_START", "0123abc")
    monkeypatch.setenv("AIGC_JAX_GIT_COMMIT", "4567def")
    record = results.write(tmp_path / "r.json", metrics={})
    assert record["git_commit"] == "0123abc" and record["git_commit_at_write"] == "4567def"


def _git(repo: pathlib.Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def test_without_the_override_the_commit_is_head_marked_when_dirty(tmp_path, monkeypatch):
    """In a throwaway repository: HEAD when clean, HEAD + a marker when a tracked file changed, and
    "unknown" outside any repository."""
    monkeypatch.delenv("AIGC_JAX_GIT_COMMIT", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no search above tmp_path
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "tracked.txt").write_text("a")
    _git(repo, "add", "tracked.txt")
    _git(repo, "commit", "-qm", "first")
    head = _git(repo, "rev-parse", "HEAD")
    monkeypatch.chdir(repo)
    assert results.git_commit() == head
    (repo / "benchmarks" / "results").mkdir(parents=True)
    (repo / "benchmarks" / "results" / "r.json").write_text("{}")
    _git(repo, "add", "benchmarks")
    assert results.git_commit() == head  # a result file is not code
    (repo / "tracked.txt").write_text("b")
    assert results.git_commit() == head + "+uncommitted changes"
    monkeypatch.chdir(tmp_path)
    assert results.git_commit() == "unknown"


def test_a_tagged_experiment_run_gets_its_own_workdir_and_result_file(monkeypatch):
    path = pathlib.Path(__file__).parents[1] / "experiments" / "common.py"
    spec = importlib.util.spec_from_file_location("experiments_common", path)
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    presets = ("cpu", "full")
    monkeypatch.setattr(sys, "argv", ["x.py", "--preset", "full", "--config.train.num_steps=5"])
    args, overrides = common.parse_args("doc", presets, "cpu")
    assert overrides == ["--config.train.num_steps=5"]
    assert common.result_path("unet", args).name == "unet__full.json"
    assert common.workdir_for(seqgan, common.run_name(args), None).name == "seqgan__full"
    monkeypatch.setattr(sys, "argv", ["x.py", "--preset", "full", "--tag", "d_lr_1e-3"])
    args, _ = common.parse_args("doc", presets, "cpu")
    assert common.result_path("seqgan", args).name == "seqgan__full_d_lr_1e-3.json"
    assert common.workdir_for(seqgan, common.run_name(args), None).name == "seqgan__full_d_lr_1e-3"
