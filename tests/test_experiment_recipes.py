"""The shared mechanics of the experiment recipes (experiments/common.py) and the GPU jobs that run them."""

import importlib
import importlib.util
import os
import pathlib
import re
import shlex
import subprocess

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


# experiments/run_accelerator.sh's jobs run only on a borrowed GPU, minutes at a time: a mistyped recipe,
# preset or config key there would waste a session, so each job's command is checked here.
_ACCELERATOR_SCRIPT = pathlib.Path(__file__).parents[1] / "experiments" / "run_accelerator.sh"
_RECIPE_SYSTEMS = {  # recipe (or the CLI's system name) → the systems whose configs it overrides
    "experiments/unet_fashion_scenes.py": ("unet_fashion_scenes",),
    "experiments/transformer_g2p.py": ("transformer_g2p",),
    "experiments/seqgan.py": ("seqgan",),
    "experiments/gans_fashion.py": ("gan_mlp_fashion", "dcgan_fashion"),
    "dcgan_fashion": ("dcgan_fashion",),
}


def _accelerator_jobs() -> list[str]:
    return re.findall(r"^    ([\w.-]+)\)", _ACCELERATOR_SCRIPT.read_text(), flags=re.MULTILINE)


def test_the_accelerator_jobs_are_found():
    # an empty list would make the check below pass by running nothing
    assert {"gans", "dcgan_average", "unet_60000_steps", "g2p", "seqgan"} <= set(_accelerator_jobs())


@pytest.mark.parametrize("job", _accelerator_jobs())
def test_every_accelerator_job_names_a_recipe_preset_and_config_keys_that_exist(job):
    function = re.search(
        r"^command_of\(\) \{.*?^\}", _ACCELERATOR_SCRIPT.read_text(), re.DOTALL | re.MULTILINE
    )
    done = subprocess.run(
        ["bash", "-c", f'{function.group(0)}\ncommand_of "$1"', "bash", job],
        capture_output=True,
        text=True,
        env={"CLASSIFIER": "workdirs/experiments/cnn_fashion__cpu", "PATH": os.environ["PATH"]},
        check=True,
    )
    args = shlex.split(done.stdout)
    through_the_cli = args[:3] == ["-m", "aigc_jax.cli", "train"]
    recipe = args[3] if through_the_cli else args[0]
    assert recipe in _RECIPE_SYSTEMS, f"{job}: unknown recipe {recipe}"
    assert through_the_cli or (pathlib.Path(__file__).parents[1] / recipe).exists()
    preset = args[args.index("--preset") + 1]
    overrides = [a for a in args if a.startswith("--config.")]
    for name in _RECIPE_SYSTEMS[recipe]:
        module = importlib.import_module(f"aigc_jax.systems.{name}")
        recipes.preset_config(module, preset, overrides)  # what the recipes call; raises on an unknown key
