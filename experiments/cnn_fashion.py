"""CNN image classification on Fashion-MNIST (source questions 8 and 26).

Commands (2 CPU cores):

    python experiments/cnn_fashion.py --preset cpu    # VGG-style BN net, ~10 min of training on Zen 5
    python experiments/cnn_fashion.py --preset seed   # the source's network, for comparison

Data: the embedded `fashion_mnist` set from Debian's `dataset-fashion-mnist` — 55,000 train and 5,000
validation images (carved from the 60,000 training images by a fixed seed) and the 10,000 test images.
Training watches the validation split; the test split is read once, at the end, for the reported
number.

Metric: `test_accuracy`, top-1 over all 10,000 test images, with per-class accuracy beside it.

Expected result: `cpu` preset test_accuracy ≥ 0.940 within 30 minutes on 2 cores. Anchors: the Flax
MNIST example reaches 99.17% on MNIST; strong CNNs reach 94–96% on Fashion-MNIST (the data set's
benchmark page lists 2-layer CNNs at ~91–93% and VGG-style nets with augmentation at 93–95%). The
`seed` preset is the source's network trained with Adam 1e-3 for ~10 epochs, without augmentation.

The preset since stop 27: 33,000 steps of 32 images at Adam 1e-3 (~19 epochs). On a Zen 5 EPYC (2 cores)
its three seeds gave test 0.9379, 0.9412 and 0.9434, mean 0.9408 (validation 0.9468, 0.9492, 0.9470;
532-591 s of training, 639-710 s wall): `--tag zen5_33000_steps[_seed1|_seed2]` with
`--config.train.seed=1|2`, seeds 0 and 1 run with `--config.train.num_steps=33000` before it became the
preset (cnn_fashion__cpu_zen5_33000_steps*.json). It was adopted by a rule fixed before those two runs:
their validation mean at least 0.002 above the 22,000-step runs' 0.9457 (five runs below); it was 0.9480.
The test accuracies show no gain beyond the spread between runs (mean 0.9408 against 0.9405 for the seven
22,000-step runs).

Before it, the preset was 22,000 steps (~13 epochs). Its recorded cpu result (test 0.9405, validation
0.9452, 1,624 s of training on a Xeon) is cnn_fashion__cpu.json: 22,000 steps of 32 images at Adam 1e-3.
It was first trained as a variant of the batch-128 preset
(`--tag batch32` with the overrides that are now the preset, cnn_fashion__cpu_batch32.json), chosen over
that preset on validation accuracy (0.9452 vs 0.9442), then re-run as the plain preset command: the two
runs' logs agree to the last digit (training on the CPU is deterministic for a seed). Why batch 32: XLA's
CPU convolutions run ~25% more images per second in batches of 32 than of 128 (the activations stay in
cache), so the same 30 minutes hold ~13 epochs with 4x the updates instead of ~10. It clears the target
by 0.05 points, well inside the run-to-run spread of ~0.3 points seen across these runs: a different seed
could miss it.

How the preset got there, all chosen on validation accuracy: the first preset's 2-pixel crops and
dropout 0.3 (0.9318, 4,000 steps of 128; test 0.9254, cnn_fashion__cpu_crops_dropout0.3.json) lost to
flips and dropout 0.2 (0.9406); evaluation with flip averaging raised that network to 0.9426 (its test
accuracy without averaging was 0.9352), and one-pixel shifts of each view (`eval.shift_average`) raised
the next run's network (`--workdir workdirs/experiments/cnn_fashion__cpu_s8`, 4,500 steps of 128, 1,454 s
of training) from 0.9426 to 0.9442 — test 0.9383, cnn_fashion__cpu_batch128.json, the batch-128 preset's
record (its `network_note` says how it was evaluated). Label smoothing 0.1 on top (`--config.train.
label_smoothing=0.1 --workdir workdirs/experiments/cnn_fashion__cpu_ls01`, 1,470 s of training) lowered
validation to 0.9368 (test 0.9357; cnn_fashion__cpu_label_smoothing0.1.json). Using all 30 minutes at
batch 128 (`--config.train.num_steps=5200`, 1,699 s) gave validation 0.9396 (test 0.9382;
cnn_fashion__cpu_5200_steps.json).

On an AMD EPYC (2 cores) the same cpu command gave test 0.9394, validation 0.9450, in 1,053 s of training
(cnn_fashion__cpu_amd_epyc.json: one seed is deterministic on one processor, not across processors).
A second seed on that machine (`--tag seed1 --config.train.seed=1`, 1,018 s of training) gave test
0.9427, validation 0.9472 (cnn_fashion__cpu_seed1.json): over the three runs, mean test accuracy 0.9409.
Chosen against there: random erasing, `--tag erase0.5 --config.augment.erase_probability=0.5` (validation
0.9434; test 0.9376, cnn_fashion__cpu_erase0.5.json), and shifting each view to all eight neighbours
instead of four (18 views; validation -0.0026 and -0.0034 on those two networks).
On an AMD EPYC of family 26 (Zen 5, 2 cores): `--tag zen5_xla_convs` (at 34e5f87) gave test 0.9418,
validation 0.9444, in 439 s of training (cnn_fashion__cpu_zen5_xla_convs.json), and `--tag zen5` (at
50f7dc9, the first convolution then a matrix product of patches, since reverted) test 0.9389, validation
0.9456, in 465 s (cnn_fashion__cpu_zen5.json); the GAN pairs of the same tags are scored by these
classifiers. With convolutions on XLA's threads (aigc_jax/host.py, since 2707a33), `--tag
zen5_threaded_convs` (at eabb3e7) gave test 0.9392, validation 0.9466, in 355 s of training
(cnn_fashion__cpu_zen5_threaded_convs.json), and with the max-pool's gradient computed in one pass
(the same gradient up to float rounding), `--tag zen5_max_pool_gradient` (at 5513839) test 0.9407,
validation 0.9448, in 357 s (cnn_fashion__cpu_zen5_max_pool_gradient.json). Over the seven runs, mean test
accuracy 0.9405.

Writes experiments/results/cnn_fashion__<preset>.json. Extra `--config.KEY=VALUE` arguments override the
preset and are recorded in the command. The `cpu` workdir (workdirs/experiments/cnn_fashion__cpu) is
the classifier that experiments/gans_fashion.py measures generated images with.
"""

import sys

import common

from aigc_jax import results
from aigc_jax.errors import exit_code_of
from aigc_jax.systems import cnn_fashion
from aigc_jax.train import writer


def main() -> None:
    args, overrides = common.parse_args(__doc__, cnn_fashion.PRESETS, "cpu")
    fit, test = common.train_then_test(cnn_fashion, args, overrides)
    # the budget is the whole training's, also when this run resumed (or only evaluated) a workdir
    train_seconds = writer.logged_train_seconds(
        common.workdir_for(cnn_fashion, common.run_name(args), args.workdir), fit.steps
    )
    record = results.write(
        common.result_path("cnn_fashion", args),
        experiment="cnn_fashion",
        system=cnn_fashion.NAME,
        preset=args.preset,
        metrics={
            "test_accuracy": test["accuracy"],
            "test_loss": test["loss"],
            "validation_accuracy": fit.metrics["accuracy"],
            "per_class_test_accuracy": {k: v for k, v in test.items() if k.startswith("accuracy_")},
            "train_seconds": train_seconds,
        },
        target={"test_accuracy_at_least": 0.940, "train_seconds_at_most": 1800}
        if args.preset == "cpu"
        else {},
        steps=fit.steps,
    )
    print(
        f"test_accuracy {record['metrics']['test_accuracy']:.4f} after {fit.steps} steps, "
        f"{train_seconds:.0f} s of training ({record['hardware']})"
    )


if __name__ == "__main__":
    sys.exit(exit_code_of(main))
