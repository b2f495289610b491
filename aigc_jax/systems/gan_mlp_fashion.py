"""GAN image generation on Fashion-MNIST with the source's MLPs (question 3), its bugs fixed.

Generator: noise 100 → 256 → 512 → 1024 → 784, LeakyReLU 0.2, tanh. Discriminator: 784 → 1024 → 512 →
256 → 1, LeakyReLU 0.2, dropout 0.3, sigmoid (inside the loss). Adam 2e-4, binary cross-entropy. The
training and evaluation mechanics, shared with `dcgan_fashion`, are in `aigc_jax/systems/gan.py`.

Presets: `smoke` (seconds on the 8×8 `digits`, for tests), `cpu` (the same wall time as
`dcgan_fashion`'s cpu preset on 2 cores; experiments/gans_fashion.py), `full` (longer, for an accelerator).
"""

import pathlib

import ml_collections

from aigc_jax.models.convnets import MlpDiscriminator, MlpGenerator
from aigc_jax.systems.gan import Gan, gan_config

NAME = "gan_mlp_fashion"
PRESETS = ("smoke", "cpu", "full")


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    config = gan_config(NAME, preset, PRESETS)
    config.model = ml_collections.ConfigDict(
        {"noise_dim": 100, "generator_hidden": (256, 512, 1024), "discriminator_hidden": (1024, 512, 256)}
    )
    if preset == "smoke":
        config.data.name = "digits"
        config.model.update(generator_hidden=(32, 64), discriminator_hidden=(64, 32), noise_dim=16)
        config.train.update(
            num_steps=20, batch_size=32, log_every=5, eval_every=10, eval_batches=2, checkpoint_every=10
        )
        config.sample.num_samples = 16
    elif preset == "cpu":
        # the same training time as dcgan_fashion's cpu preset; the cheap MLP steps many more times
        config.train.update(
            num_steps=200_000,
            max_train_seconds=600,
            log_every=500,
            eval_every=10_000,
            checkpoint_every=10_000,
        )
    elif preset == "full":
        config.train.update(num_steps=100000, log_every=500, eval_every=10000, checkpoint_every=10000)
    return config


def build(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> Gan:
    del workdir
    m = config.model
    return Gan(
        config,
        generator=MlpGenerator(hidden=tuple(m.generator_hidden)),
        discriminator=MlpDiscriminator(hidden=tuple(m.discriminator_hidden)),
    )
