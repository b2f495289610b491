"""The source's MLP GAN against a DCGAN on Fashion-MNIST, for the same wall time (source question 3).

Command (2 CPU cores; needs the classifier of `python experiments/cnn_fashion.py --preset cpu` first):

    python experiments/gans_fashion.py [--preset cpu] [--classifier-workdir CNN_FASHION_WORKDIR]

(CNN_FASHION_WORKDIR defaults to workdirs/experiments/cnn_fashion__cpu.)

Each GAN's `cpu` preset trains for 10 minutes of training time (`config.train.max_train_seconds=600`),
one after the other, so the MLP GAN (cheap steps) takes many more steps than the DCGAN in that time.
Both start from scratch: the recipe refuses a workdir that already holds a run (move it aside, or pass
`--tag NAME`), since resuming would add another 600 s to a finished run.
On an accelerator, `--preset full` (DCGAN width 128) with the same `--config.train.max_train_seconds=S`
for both (and a `--config.train.num_steps` too large to reach) compares them for equal wall time too.
Recorded on an AMD EPYC of family 26 (Zen 5, 2 cores), each pair scored by a classifier trained there
(`python experiments/cnn_fashion.py --preset cpu --tag TAG`, then `--tag TAG --classifier-workdir
workdirs/experiments/cnn_fashion__cpu_TAG`): with the DCGAN's two 3×3 blocks at 7×7 in each network (since
3c8392e), `zen5_quarter_convs` gave DCGAN fd 8.8 after 18,570 steps against the MLP GAN's 105.7 after
49,808 (0.083x), and its second seed 8.7 against 120.6 (0.072x): met. Every pair before, with its command,
commit, machine and time: experiments/RESULTS.md.

Data: the embedded `fashion_mnist` train split (55,000 images) for training, whose periodic evaluations
read the 5,000 validation images; the 10,000 test images are read once, after training, for the reported
metrics. Nothing was tuned on the test split: both GANs run the DCGAN paper's optimiser settings (Adam,
β1 0.5), at its 2e-4 except the DCGAN's cpu preset, whose 2e-3 was chosen on validation fd in 300-s runs
(experiments/results/dcgan_fashion__cpu_learning_rates.json), and whose generator average (decay 0.999) was
kept on validation fd in 600-s runs (experiments/results/dcgan_fashion__cpu_generator_average.json) — after
the test fd of the run without it had been read — and carried to the `full` preset unscreened (an H200
run later measured it on validation: dcgan_fashion__full_generator_average.json); the MLP GAN keeps the
source's 2e-4 and no average.

Metrics, in the feature space of the `cnn_fashion` classifier's penultimate layer (256 features):
- `fd_fashion`: Fréchet distance between 10,000 generated and the 10,000 test images (FID's formula,
  not Inception FID — the numbers are not comparable with published FIDs);
- `class_entropy`: entropy (nats) of the classifier's predicted classes over the generated images,
  beside `real_class_entropy` of the test images (log 10 = 2.303 for ten equal classes);
- the floor: the same metrics for 10,000 real training images against the test images, and for each
  generator untrained.

Expected result: DCGAN's fd_fashion at most half the MLP GAN's, and its class_entropy within 5% of
real_class_entropy. Writes experiments/results/{gan_mlp_fashion,dcgan_fashion}__<preset>.json. Extra
`--config.KEY=VALUE` arguments override both GANs' presets and are recorded in the command.
"""

import pathlib
import sys

import common
import jax
import numpy as np

from aigc_jax import metrics, results
from aigc_jax.data import catalog, in_memory
from aigc_jax.errors import exit_code_of
from aigc_jax.systems import cnn_fashion, dcgan_fashion, gan_mlp_fashion
from aigc_jax.train import loop
from aigc_jax.train import mesh as mesh_lib
from aigc_jax.train.state import create_train_state

NUM_IMAGES = 10_000


def real_floor(classifier_workdir: str) -> dict[str, float]:
    """fd_fashion and class entropies of 10,000 real training images against the 10,000 test images."""
    extract = jax.jit(cnn_fashion.load_feature_extractor(classifier_workdir))

    def moments(split: str) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        pixels = catalog.arrays("fashion_mnist", split)["image"][:NUM_IMAGES]
        outputs = [extract(in_memory.to_float(pixels[i : i + 500])) for i in range(0, len(pixels), 500)]
        features, logits = zip(*outputs, strict=True)
        features = np.concatenate(features).astype(np.float64)
        classes = np.bincount(np.argmax(np.concatenate(logits), -1), minlength=10)
        return (features.mean(0), np.cov(features, rowvar=False)), classes

    (train_gaussian, train_classes), (test_gaussian, test_classes) = moments("train"), moments("test")
    return {
        "fd_fashion": metrics.frechet_distance(*train_gaussian, *test_gaussian),
        "class_entropy": metrics.class_entropy(train_classes),
        "real_class_entropy": metrics.class_entropy(test_classes),
    }


def untrained(module, preset: str, overrides: list[str], workdir: pathlib.Path) -> dict[str, float]:
    """The test-split metrics of the generator before any training (the seed's initial weights)."""
    config = common.preset_config(module, preset, overrides)
    config.data.eval_split = "test"
    mesh = mesh_lib.mesh_for(config)
    system = module.build(config, workdir)
    with loop.activate(mesh):
        state, _ = create_train_state(
            system.init_variables, system.tx, mesh, jax.random.PRNGKey(config.train.seed)
        )
        return loop.evaluate_state(system, state, mesh)


def main() -> None:
    parser = common.make_parser(__doc__, ("cpu", "full"), "cpu", workdir=False)  # two systems, two workdirs
    parser.add_argument("--classifier-workdir", default="workdirs/experiments/cnn_fashion__cpu")
    args, extra = parser.parse_known_args()
    overrides = [f"--config.eval.classifier_workdir={args.classifier_workdir}", *extra]
    workdirs = {}
    for module in (gan_mlp_fashion, dcgan_fashion):  # a bad override or used workdir fails now, not later
        common.preset_config(module, args.preset, overrides)
        workdirs[module] = common.require_fresh(common.workdir_for(module, common.run_name(args), None))
    floor = real_floor(args.classifier_workdir)
    print("real data floor:", floor)
    runs = {}
    for module in (gan_mlp_fashion, dcgan_fashion):
        workdir = workdirs[module]
        before = untrained(module, args.preset, overrides, workdir)
        fit = common.train(module, args.preset, workdir, overrides)  # watches the validation split
        test = common.evaluate_split(module, workdir, "test")
        runs[module.NAME] = {**test, "train_seconds": fit.train_seconds, "steps": fit.steps}
        runs[module.NAME]["validation"] = {k: fit.metrics[k] for k in ("fd_fashion", "class_entropy")}
        runs[module.NAME]["untrained"] = {k: before[k] for k in ("fd_fashion", "class_entropy")}
        print(module.NAME, runs[module.NAME])
    mlp, dcgan = runs[gan_mlp_fashion.NAME], runs[dcgan_fashion.NAME]
    comparison = {
        "dcgan_over_mlp_fd_fashion": dcgan["fd_fashion"] / mlp["fd_fashion"],
        "dcgan_class_entropy_relative_gap": abs(dcgan["class_entropy"] / dcgan["real_class_entropy"] - 1),
    }
    for module in (gan_mlp_fashion, dcgan_fashion):
        run = runs[module.NAME]
        results.write(
            common.result_path(module.NAME, args),
            experiment="gans_fashion",
            system=module.NAME,
            preset=args.preset,
            metrics={k: v for k, v in run.items() if k not in ("steps",)},
            real_data_floor=floor,
            comparison=comparison,
            target={
                "dcgan_over_mlp_fd_fashion_at_most": 0.5,
                "dcgan_class_entropy_relative_gap_at_most": 0.05,
            },
            steps=run["steps"],
            classifier_workdir=args.classifier_workdir,
        )
    print(comparison)


if __name__ == "__main__":
    sys.exit(exit_code_of(main))
