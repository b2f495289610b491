"""Result files: the numbers plus how, where and when they were made."""

import json
import shutil
import subprocess

import pytest

from aigc_jax import results


def test_a_result_file_records_its_fields_and_provenance(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_JAX_GIT_COMMIT", "0123abc")  # a copy of the tree run where .git is stale
    record = results.write(tmp_path / "r.json", metrics={"accuracy": 0.5})
    assert json.loads((tmp_path / "r.json").read_text()) == record
    assert record["metrics"] == {"accuracy": 0.5} and record["git_commit"] == "0123abc"
    assert record["wall_seconds"] >= 0 and record["hardware"] and record["command"] and record["date"]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_without_the_override_the_commit_is_head(monkeypatch):
    monkeypatch.delenv("AIGC_JAX_GIT_COMMIT", raising=False)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    assert results.git_commit().startswith(head.stdout.strip())
