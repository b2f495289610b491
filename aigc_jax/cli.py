"""`aigc-jax list | data prepare | train | eval | sample | chat` — one CLI for every system.

Every problem the user can fix ends in one line on stderr naming the fix, and exit code 2.
"""

import argparse
import json
import pathlib
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from absl import logging as absl_logging

from aigc_jax import systems
from aigc_jax.errors import UserError, exit_code_of
from aigc_jax.train import config as config_lib


def _cmd_list(args: argparse.Namespace) -> None:
    rows = [("system", "questions", "data", "status", "description")]
    for spec in systems.REGISTRY.values():
        questions = ",".join(str(q) for q in spec.seed_questions)
        rows.append((spec.name, questions, spec.data, spec.status, spec.description))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    for row in rows:  # columns as wide as their longest entry; the description last, unpadded
        print(
            "  ".join(f"{cell:<{width}}" for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]
        )


def _cmd_data(args: argparse.Namespace) -> None:
    from aigc_jax.data import catalog

    path = catalog.prepare(args.name, args.data_dir)
    print(f"{args.name} is ready in {path}")


def _mesh_for(config: Any) -> Any:
    from aigc_jax.train import mesh as mesh_lib

    return mesh_lib.mesh_for(config)


def _cmd_train(args: argparse.Namespace, extra: Sequence[str]) -> None:
    module = systems.load(args.name)
    base = module.get_config() if args.preset is None else module.get_config(args.preset)
    config = config_lib.apply_overrides(base, config_lib.parse_overrides(extra))
    workdir = pathlib.Path(args.workdir or f"workdirs/{args.name}_{config.preset}")
    config_lib.check_workdir(workdir, config)
    mesh = _mesh_for(config)

    from aigc_jax.train import loop, state

    system = module.build(config, workdir)
    count = state.param_count(state.abstract_train_state(system.init_variables, system.tx, mesh).params)
    print(f"{args.name} ({config.preset}): {count:,} parameters, mesh {dict(mesh.shape)}, workdir {workdir}")
    result = loop.fit(system, workdir, mesh)
    print(f"trained to step {result.steps} ({result.train_seconds:.0f} s in train steps); final eval:")
    print(json.dumps(result.metrics, indent=2))
    final_samples = sorted((workdir / "samples").glob(f"step_{result.steps:07d}*"))
    for path in final_samples:
        print(f"--- sample ({path}) ---")
        if path.suffix == ".txt":
            print(path.read_text())


def _restore(workdir: pathlib.Path, split: str | None = None) -> tuple[Any, Any, Any]:
    from aigc_jax.train import loop

    config = config_lib.load_workdir_config(workdir)
    if split is not None:
        if "eval_split" not in config.data:
            raise UserError(f"{config.name} has a fixed evaluation split; drop --split")
        config.data.eval_split = split
    system = systems.load(config.name).build(config, workdir)
    mesh = _mesh_for(config)
    with loop.activate(mesh):
        state = loop.restore_state(system, workdir, mesh)
    return system, state, mesh


def _cmd_eval(args: argparse.Namespace) -> None:
    from aigc_jax.train import loop

    workdir = pathlib.Path(args.workdir)
    system, state, mesh = _restore(workdir, args.split)
    with loop.activate(mesh):
        metrics = loop.evaluate_state(system, state, mesh)
    result = {"step": int(state.step), **metrics}
    (workdir / "eval.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def _parse_options(extra: Sequence[str]) -> dict[str, str]:
    """`--top-k 5 --prompt "To be"` → {"top_k": "5", "prompt": "To be"}; the system checks the names and
    parses each value into the type of its default (`base.sample_options`)."""
    options: dict[str, Any] = {}
    it = iter(extra)
    for arg in it:
        if not arg.startswith("--"):
            raise UserError(f"unexpected argument {arg!r}; sample options look like --prompt TEXT")
        name, sep, value = arg[2:].partition("=")
        if not sep:
            value = next(it, None)
            if value is None:
                raise UserError(f"{arg} needs a value")
        options[name.replace("-", "_")] = value
    return options


def _cmd_sample(args: argparse.Namespace, extra: Sequence[str]) -> None:
    import jax

    from aigc_jax.train import loop

    workdir = pathlib.Path(args.workdir)
    options = _parse_options(extra)
    if args.num_samples is not None:
        options["num_samples"] = args.num_samples
    system, state, mesh = _restore(workdir)
    with loop.activate(mesh):
        outputs = system.sample(state, jax.random.PRNGKey(args.seed), **options)
    paths = system.write_samples(outputs, workdir / "samples", f"sample_seed{args.seed}")
    if isinstance(outputs, list):  # generated texts
        for output in outputs:
            print(output)
            print("=====")
    else:  # a summary of pictures or a report; the files hold the rest
        print(outputs)
    print(f"written to {', '.join(str(p) for p in paths)}", file=sys.stderr)


def _user_lines(interactive: bool) -> Iterator[str]:
    """The user's turns from stdin, one a line, until EOF; a prompt on stderr only in a terminal."""
    while True:
        if interactive:
            print("you> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            return
        yield " ".join(line.split())


def _cmd_chat(args: argparse.Namespace) -> None:
    """A conversation in the terminal: each user line is a turn, each model reply is printed as one line,
    and the whole history is the context of the next reply. Works with piped stdin."""
    import jax

    from aigc_jax.systems.base import check_top_p
    from aigc_jax.train import loop

    check_top_p(args.top_p)
    if args.beam < 0:
        raise UserError(f"--beam must be 0 or more, not {args.beam}")
    workdir = pathlib.Path(args.workdir)
    system, state, mesh = _restore(workdir)
    if not hasattr(system, "reply"):
        raise UserError(f"{workdir} holds a {system.config.name} run; chat needs a dialogue system's workdir")
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"chatting with {workdir} (step {int(state.step)}); /quit or Ctrl-D ends", file=sys.stderr)
    rng = jax.random.PRNGKey(args.seed)
    history: list[str] = []
    for line in _user_lines(interactive):
        if line == "/quit":
            break
        if not line:
            continue
        history.append(line)
        with loop.activate(mesh):
            (reply,) = system.reply(
                state, jax.random.fold_in(rng, len(history)), [history], top_p=args.top_p, beam_size=args.beam
            )
        history.append(reply)
        print(reply, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aigc-jax", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every registered system")
    data = commands.add_parser("data", help="data set tasks")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    prepare = data_commands.add_parser("prepare", help="build an embedded data set from packaged sources")
    prepare.add_argument("name")
    prepare.add_argument("--data-dir", default=None)
    train = commands.add_parser("train", help="train a system (resumes if the workdir has a checkpoint)")
    train.add_argument("name")
    train.add_argument("--preset", default=None, help="default: the system's own (cpu for most)")
    train.add_argument("--workdir", default=None, help="default: workdirs/NAME_PRESET")
    evaluate = commands.add_parser("eval", help="evaluate the latest checkpoint of a workdir")
    evaluate.add_argument("--workdir", required=True)
    evaluate.add_argument("--split", default=None, help="e.g. test (default: the split trained with)")
    sample = commands.add_parser("sample", help="sample from the latest checkpoint of a workdir")
    sample.add_argument("--workdir", required=True)
    sample.add_argument("--seed", type=int, default=0)
    num_flag = systems.option_flag("num_samples")
    sample.add_argument(num_flag, dest="num_samples", type=int, default=None, help="number of samples")
    chat = commands.add_parser("chat", help="talk with a dialogue model (stdin lines are your turns)")
    chat.add_argument("--workdir", required=True)
    chat.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling mass")
    chat.add_argument("--beam", type=int, default=0, help="> 0: beam search of this width, not sampling")
    chat.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = _parser().parse_known_args(argv)
    absl_logging.set_verbosity(absl_logging.ERROR)  # Orbax's INFO/WARNING lines drown the CLI's output

    def run() -> None:
        if args.command in ("train", "sample"):
            {"train": _cmd_train, "sample": _cmd_sample}[args.command](args, extra)
        else:
            if extra:
                raise UserError(f"unexpected arguments {' '.join(extra)} for `aigc-jax {args.command}`")
            {"list": _cmd_list, "data": _cmd_data, "eval": _cmd_eval, "chat": _cmd_chat}[args.command](args)

    return exit_code_of(run)


if __name__ == "__main__":
    sys.exit(main())
