"""How fast SeqGAN's discriminator learns on the oracle benchmark: the probe behind its missed target.

Command (2 CPU cores, ~10 minutes; reads the pre-trained generator of `python experiments/seqgan.py
--preset oracle`):

    python experiments/seqgan_discriminator.py [--steps 600] [--learning-rates 1e-4 1e-3 1e-2]

For each discriminator learning rate (Adam; the paper's is 1e-4), the `seqgan` system's own
discriminator step trains the discriminator alone for `--steps` steps, each on 64 real oracle sequences
and 64 fresh ones from the generator held fixed, starting from the state of
workdirs/experiments/seqgan__oracle/pretrain (generator after 1,500 MLE steps, discriminator untrained).
As a contrast it does the same at 1e-4 against the *untrained* generator, whose samples are nearly
uniform over the 5,000 tokens. Every `steps / 6` steps it records the discriminator's accuracy on
1,280 held-out real sequences and as many generated ones.

Expected result: a discriminator that rewards SeqGAN's generator needs accuracies well above 0.5 on
both. Recorded: near chance at every rate (experiments/results/seqgan_discriminator__oracle.json).

Writes experiments/results/seqgan_discriminator__oracle.json.
"""

import argparse
import sys
import time

import common
import jax

from aigc_jax import results
from aigc_jax.errors import exit_code_of
from aigc_jax.systems import seqgan
from aigc_jax.train import loop
from aigc_jax.train import mesh as mesh_lib
from aigc_jax.train.state import create_train_state

PRETRAINED = common.workdir_for(seqgan, "oracle", None) / "pretrain"
EVAL_BATCHES = 20


def learning_curve(learning_rate: float, steps: int, pretrained: bool) -> list[dict[str, float]]:
    """The discriminator's validation accuracies while it alone trains for `steps` steps."""
    config = seqgan.get_config("oracle")
    config.optim_d.learning_rate = learning_rate
    # every step of the probe is a discriminator step: from step 1,500 (restored) or from step 0
    config.phases.update(mle_steps=config.phases.mle_steps if pretrained else 0, d_pretrain_steps=10**9)
    system = seqgan.build(config, PRETRAINED)
    mesh = mesh_lib.make_mesh((1, 1, 1), jax.devices()[:1])
    curve = []
    with loop.activate(mesh):
        if pretrained:
            state = loop.restore_state(system, PRETRAINED, mesh)
        else:
            state, _ = create_train_state(system.init_variables, system.tx, mesh, jax.random.PRNGKey(0))
        train_step, eval_step = loop.jit_steps(system, jax.tree.map(lambda x: x.sharding, state), mesh)
        batches = iter(system.train_dataset())
        start = time.perf_counter()
        for step in range(1, steps + 1):
            state, metrics = train_step(state, mesh_lib.shard_batch(next(batches), mesh))
            if step % max(steps // 6, 1) == 0:
                accuracies = loop.evaluate(system, state, eval_step, mesh, EVAL_BATCHES)
                point = {
                    "step": step,
                    "d_loss": float(metrics["d_loss"]),
                    "d_real_accuracy": accuracies["d_real_accuracy"],
                    "d_fake_accuracy": accuracies["d_fake_accuracy"],
                    "seconds": time.perf_counter() - start,
                }
                print(f"lr {learning_rate:g} pretrained={pretrained}: {point}", flush=True)
                curve.append(point)
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2])
    args = parser.parse_args()
    curves = {
        f"pretrained_generator_lr_{lr:g}": learning_curve(lr, args.steps, True) for lr in args.learning_rates
    }
    curves["untrained_generator_lr_0.0001"] = learning_curve(1e-4, args.steps // 2, False)
    results.write(
        common.RESULTS / "seqgan_discriminator__oracle.json",
        experiment="seqgan_discriminator",
        system=seqgan.NAME,
        preset="oracle",
        metrics={name: curve[-1] for name, curve in curves.items()},
        curves=curves,
        generator_checkpoint=str(PRETRAINED),
    )


if __name__ == "__main__":
    sys.exit(exit_code_of(main))
