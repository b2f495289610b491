"""What every experiment recipe does: read `--preset`, `--workdir` and `--config.KEY=VALUE` overrides,
train (resuming from the workdir), evaluate the latest checkpoint on a whole split, write a result."""

import argparse
import pathlib
from types import ModuleType
from typing import Any

from aigc_jax.errors import UserError
from aigc_jax.train import config as config_lib
from aigc_jax.train import loop
from aigc_jax.train import mesh as mesh_lib

RESULTS = pathlib.Path(__file__).parent / "results"


def make_parser(
    doc: str, presets: tuple[str, ...], default: str, workdir: bool = True
) -> argparse.ArgumentParser:
    """`--preset`, `--tag` and (for one-system recipes) `--workdir`; a recipe may add its own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--preset", default=default, choices=presets)
    if workdir:
        parser.add_argument("--workdir", default=None, help="default: workdirs/experiments/SYSTEM__RUN")
    parser.add_argument(
        "--tag",
        default="",
        help="names a variant run: RUN is PRESET_TAG in its workdir and result file (default: RUN is PRESET)",
    )
    return parser


def parse_args(doc: str, presets: tuple[str, ...], default: str) -> tuple[argparse.Namespace, list[str]]:
    return make_parser(doc, presets, default).parse_known_args()


def run_name(args: argparse.Namespace) -> str:
    """PRESET, or PRESET_TAG for a tagged variant: what its workdir and result file are named after."""
    return f"{args.preset}_{args.tag}" if args.tag else args.preset


def result_path(name: str, args: argparse.Namespace) -> pathlib.Path:
    return RESULTS / f"{name}__{run_name(args)}.json"


def workdir_for(module: ModuleType, run: str, workdir: str | None) -> pathlib.Path:
    return pathlib.Path(workdir or f"workdirs/experiments/{module.NAME}__{run}")


def require_fresh(workdir: pathlib.Path) -> pathlib.Path:
    """`workdir`, refused if it holds checkpoints: a comparison for equal training time needs runs from
    scratch, and `train.max_train_seconds` counts per invocation, so a resumed run would train that long
    again on top of what it had."""
    checkpoints = workdir / "checkpoints"
    if checkpoints.is_dir() and any(checkpoints.iterdir()):
        raise UserError(
            f"{workdir} already holds a run; this experiment compares runs trained from scratch for the "
            "same time: move the workdir aside, or pass --tag NAME for a new one"
        )
    return workdir


def preset_config(module: ModuleType, preset: str, overrides: list[str]) -> Any:
    """`module`'s preset with the `--config.KEY=VALUE` overrides applied (a bad key or value raises)."""
    return config_lib.apply_overrides(module.get_config(preset), config_lib.parse_overrides(overrides))


def train(module: ModuleType, preset: str, workdir: pathlib.Path, overrides: list[str]) -> loop.FitResult:
    """Trains `module`'s system from its preset and the overrides into `workdir` (resuming if it can)."""
    config = preset_config(module, preset, overrides)
    config_lib.check_workdir(workdir, config)
    mesh = mesh_lib.mesh_for(config)
    return loop.fit(module.build(config, workdir), workdir, mesh)


def evaluate_split(
    module: ModuleType, workdir: pathlib.Path, split: str, overrides: dict[str, str] | None = None
) -> dict[str, Any]:
    """The latest checkpoint of `workdir`, evaluated on every example of `split`; `overrides` (dotted
    config keys) change how it is evaluated, e.g. {"decoding.beam_size": "4"}."""
    config = config_lib.apply_overrides(config_lib.load_workdir_config(workdir), overrides or {})
    config.data.eval_split = split
    mesh = mesh_lib.mesh_for(config)
    system = module.build(config, workdir)
    with loop.activate(mesh):
        return loop.evaluate_state(system, loop.restore_state(system, workdir, mesh), mesh)


def train_then_test(
    module: ModuleType, args: argparse.Namespace, overrides: list[str]
) -> tuple[loop.FitResult, dict[str, Any]]:
    """Trains (watching the validation split), then evaluates the final state on the test split."""
    workdir = workdir_for(module, run_name(args), args.workdir)
    fit = train(module, args.preset, workdir, overrides)
    return fit, evaluate_split(module, workdir, "test")
