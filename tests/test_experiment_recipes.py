"""The shared mechanics of the experiment recipes (experiments/common.py)."""

import importlib.util
import pathlib

import pytest

from aigc_jax.errors import UserError

_PATH = pathlib.Path(__file__).parents[1] / "experiments" / "common.py"
_SPEC = importlib.util.spec_from_file_location("experiments_common", _PATH)  # benchmarks/ has a `common` too
recipes = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(recipes)


def test_a_time_capped_comparison_refuses_a_workdir_that_holds_a_run(tmp_path):
    # train.max_train_seconds counts per invocation: resuming would train a finished run that long again
    assert recipes.require_fresh(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "used" / "checkpoints").mkdir(parents=True)
    assert recipes.require_fresh(tmp_path / "used") == tmp_path / "used"  # created, nothing saved yet
    (tmp_path / "used" / "checkpoints" / "1000").mkdir()
    with pytest.raises(UserError, match="already holds a run"):
        recipes.require_fresh(tmp_path / "used")
