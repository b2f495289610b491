"""The GAN mechanics that `gan_mlp_fashion` and `dcgan_fashion` share: both networks and both optimizer
states in one train state, alternating updates inside one jitted step, and the evaluation.

The source's snippet (question 3) does not run: it samples `z` before defining it, reuses the same fake
images for both updates and never detaches them. Here each step

1. draws fresh noise, generates fakes with the generator held fixed (`stop_gradient`) and updates the
   discriminator on real (label 1) and fake (label 0) images with binary cross-entropy;
2. draws new noise and updates the generator with the non-saturating loss −log D(G(z)) (Goodfellow et
   al., 2014), through the just-updated discriminator;
3. with `train.generator_average_decay` > 0, updates an exponential moving average of the generator's
   parameters (Yazıcı et al., 2019, "The Unusual Effectiveness of Averaging in GAN Training"), kept in
   `model_state` under `generator_average`; evaluation and sampling then use the average, with
   BatchNorm statistics of its own (`Gan.evaluated`), instead of the weights of the last step, whose
   quality swings from one step to the next at a high learning rate. Evaluation then also reports the
   last step's generator (`fd_fashion_last_step`, `class_entropy_last_step`), so every run measures
   what the average gained on its own trajectory.

Evaluation, on a split's real images and as many generated ones (training watches the 5,000 validation
images; experiments/gans_fashion.py reports the 10,000 test images): `fd_fashion`, the Fréchet distance
between the two sets in the feature space of a trained `cnn_fashion` classifier's penultimate layer
(FID's formula in a Fashion-MNIST feature space — not Inception FID, and not comparable with it), and
`class_entropy`, the entropy of that classifier's predicted classes over the generated images (mode
coverage), beside `real_class_entropy` of the real images. Both need `config.eval.classifier_workdir`;
without it only the discriminator's accuracies are reported.
"""

import dataclasses
import pathlib
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aigc_jax import metrics, visualize
from aigc_jax.data import images
from aigc_jax.systems import cnn_fashion
from aigc_jax.systems.base import sample_options
from aigc_jax.train import loop, optim
from aigc_jax.train.state import TrainState, apply_model

NETWORKS = ("generator", "discriminator")
AVERAGE = "generator_average"  # the model_state key of the generator's averaged parameters
STANDING_PASSES = 40  # training-mode passes that give the average its BatchNorm statistics (0.9^40 = 1.5%)


def gan_config(name: str, preset: str, presets: tuple[str, ...]) -> ml_collections.ConfigDict:
    """Settings both GANs share; each system module adds its model and presets."""
    config = loop.system_config(name, preset, presets)
    # training watches the validation split; experiments/gans_fashion.py reads the test split once, at the end
    config.data = images.data_config("fashion_mnist")
    config.eval = ml_collections.ConfigDict({"classifier_workdir": ""})  # a cnn_fashion workdir
    config.sample = ml_collections.ConfigDict({"num_samples": 64, "columns": 8})
    # Adam 2e-4 as in the source; β1 = 0.5 as in DCGAN (Radford et al.), for both networks.
    config.optim.update(
        name="adam",
        learning_rate=2e-4,
        b1=0.5,
        b2=0.999,
        schedule="constant",
        warmup_steps=1,
        grad_clip_norm=0.0,
    )
    config.train.update(batch_size=64, eval_batches=20)
    config.train.generator_average_decay = 0.0  # > 0: evaluate and sample a moving average of the generator
    return config


@dataclasses.dataclass(frozen=True)
class ImageSamples:
    """Generated images in [-1, 1], [N, H, W, C], and how to tile them."""

    images: np.ndarray
    columns: int

    def __str__(self) -> str:
        return f"{len(self.images)} generated images of {self.images.shape[1]}×{self.images.shape[2]}"


def _bce(logits: jax.Array, label: float) -> jax.Array:
    return optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label))


@dataclasses.dataclass
class Gan(images.ImageDataMethods):
    """The `System` for a GAN on an image data set, with any generator / discriminator pair."""

    config: ml_collections.ConfigDict
    generator: nn.Module  # with an `image_shape` field, set here from the data
    discriminator: nn.Module

    def __post_init__(self) -> None:
        self.data = images.ImageSplits(self.config.data, self.config.train.batch_size, self.config.train.seed)
        self.generator = self.generator.clone(image_shape=tuple(self.data.image_shape))
        tx, self.schedule = optim.make_optimizer(self.config.optim, self.config.train.num_steps)
        self.tx = optim.PerNetwork(tuple((network, tx) for network in NETWORKS))
        workdir = self.config.eval.classifier_workdir
        self.extract_features = cnn_fashion.load_feature_extractor(workdir) if workdir else None

    @property
    def noise_dim(self) -> int:
        return self.config.model.noise_dim

    # --- model and steps -------------------------------------------------------------------------

    def init_variables(self, rng: jax.Array) -> dict[str, Any]:
        """Params of both networks under `params`; each network's other collections (BatchNorm statistics)
        under its own name, so `model_state` is {network: collections}."""
        g_rng, d_rng = jax.random.split(rng)
        g_vars = self.generator.init(g_rng, jnp.zeros((1, self.noise_dim)))
        d_vars = self.discriminator.init(d_rng, jnp.zeros((1, *self.data.image_shape)))
        variables: dict[str, Any] = {
            "params": {"generator": g_vars["params"], "discriminator": d_vars["params"]}
        }
        for network, network_vars in zip(NETWORKS, (g_vars, d_vars), strict=True):
            collections = {k: v for k, v in network_vars.items() if k != "params"}
            if collections:
                variables[network] = collections
        if self.average_decay:
            variables[AVERAGE] = g_vars["params"]
        return variables

    @property
    def average_decay(self) -> float:
        # a workdir written before `train.generator_average_decay` existed trained without the average
        return self.config.train.get("generator_average_decay", 0.0)

    def _averaged(self, state: TrainState) -> dict[str, Any]:
        """`model_state` with the generator's moving average moved one step toward its parameters. Early
        on the average forgets faster, (1 + step) / (10 + step), as TensorFlow's ExponentialMovingAverage
        with `num_updates`, so it does not drag the initial weights along."""
        decay = jnp.minimum(self.average_decay, (1.0 + state.step) / (10.0 + state.step))
        average = jax.tree.map(
            lambda a, p: decay * a + (1.0 - decay) * p, state.model_state[AVERAGE], state.params["generator"]
        )
        return {**state.model_state, AVERAGE: average}

    def evaluated(self, state: TrainState) -> tuple[dict[str, Any], dict[str, Any]]:
        """The params and model_state evaluation and sampling use: the trained generator's, or, with a
        moving average, the average with BatchNorm statistics of its own ("standing statistics", Brock et
        al., 2019). The trained generator's running statistics belong to its latest weights, not to the
        average's: at lr 2e-3 they cost 1.2 of validation fd. So the average runs in training mode on
        `STANDING_PASSES` batches of fixed noise, which leave 0.9^passes of the trained generator's
        statistics in the running averages. Pure, so the eval step simply recomputes them for each batch
        (40 small generator passes)."""
        if AVERAGE not in state.model_state:
            return state.params, state.model_state
        params = {**state.params, "generator": state.model_state[AVERAGE]}
        g_state = state.model_state.get("generator", {})
        if g_state:
            noise_PBZ = jax.random.normal(
                jax.random.PRNGKey(0), (STANDING_PASSES, self.config.train.batch_size, self.noise_dim)
            )

            def standing_pass(g_state: dict, noise_BZ: jax.Array) -> tuple[dict, None]:
                return self._generate(params, {"generator": g_state}, noise_BZ, True)[1], None

            g_state, _ = jax.lax.scan(standing_pass, g_state, noise_PBZ)
        return params, self._with_network_state(state.model_state, "generator", g_state)

    def _generate(
        self, params: Any, model_state: dict, noise: jax.Array, train: bool
    ) -> tuple[jax.Array, dict]:
        fakes, g_state = apply_model(
            self.generator, params["generator"], model_state.get("generator", {}), noise, train=train
        )
        return fakes, g_state

    def _discriminate(
        self, params: Any, model_state: dict, x: jax.Array, rng: jax.Array | None, train: bool
    ) -> tuple[jax.Array, dict]:
        return apply_model(
            self.discriminator,
            params["discriminator"],
            model_state.get("discriminator", {}),
            x,
            train=train,
            rng=rng,
        )

    def _training_noise(self, rng: jax.Array, batch_size: int) -> jax.Array:
        # Split over the batch axes like the real images; unconstrained, XLA replicates it, and every
        # device then runs the generator (and the discriminator on its fakes) on the whole batch.
        noise = jax.random.normal(rng, (batch_size, self.noise_dim))
        return nn.with_logical_constraint(noise, ("batch", None))

    def _with_network_state(self, model_state: dict, network: str, network_state: dict) -> dict:
        return {**model_state, network: network_state} if network_state else model_state

    def train_step(
        self, state: TrainState, batch: dict[str, jax.Array]
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        rng = jax.random.fold_in(state.rng, state.step)
        d_noise_rng, g_noise_rng, d_real_rng, d_fake_rng, g_dropout_rng = jax.random.split(rng, 5)
        real = batch["image"]
        batch_size = real.shape[0]

        # 1. discriminator, on real images and on fakes of a generator held fixed
        fakes, g_state = self._generate(
            state.params,
            state.model_state,
            self._training_noise(d_noise_rng, batch_size),
            True,
        )
        fakes = jax.lax.stop_gradient(fakes)

        def d_loss_fn(d_params: Any) -> tuple[jax.Array, tuple[jax.Array, jax.Array, dict]]:
            params = {**state.params, "discriminator": d_params}
            # real and fake in separate calls, so BatchNorm normalises each batch on its own, as it
            # does for the fakes of the generator's step (the PyTorch DCGAN reference does the same);
            # its running statistics, which only evaluation reads, follow both batches in turn, as there
            real_logits, d_state = self._discriminate(params, state.model_state, real, d_real_rng, True)
            after_real = self._with_network_state(state.model_state, "discriminator", d_state)
            fake_logits, d_state = self._discriminate(params, after_real, fakes, d_fake_rng, True)
            loss = _bce(real_logits, 1.0).mean() + _bce(fake_logits, 0.0).mean()
            return loss, (real_logits, fake_logits, d_state)

        (d_loss, (real_logits, fake_logits, d_state)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
            state.params["discriminator"]
        )
        model_state = self._with_network_state(state.model_state, "generator", g_state)
        model_state = self._with_network_state(model_state, "discriminator", d_state)
        state = state.apply_gradients({"discriminator": d_grads}, advance_step=False, model_state=model_state)

        # 2. generator, with fresh noise, through the updated discriminator (non-saturating loss)
        def g_loss_fn(g_params: Any) -> tuple[jax.Array, dict]:
            params = {**state.params, "generator": g_params}
            noise = self._training_noise(g_noise_rng, batch_size)
            fakes, g_state = self._generate(params, state.model_state, noise, True)
            logits, _ = self._discriminate(params, state.model_state, fakes, g_dropout_rng, True)
            return _bce(logits, 1.0).mean(), g_state

        (g_loss, g_state), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.params["generator"])
        model_state = self._with_network_state(state.model_state, "generator", g_state)
        state = state.apply_gradients({"generator": g_grads}, model_state=model_state)
        if AVERAGE in state.model_state:
            state = state.replace(model_state=self._averaged(state))
        return state, {
            "d_loss": d_loss,
            "g_loss": g_loss,
            # the NaN guard checks logged metrics: a non-finite update shows here before it is saved
            "grad_norm": optax.tree.norm((d_grads, g_grads)),
            "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),  # D's mean belief that real images are real
            "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
        }

    def eval_step(self, state: TrainState, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        weight = batch["weight"]
        fakes, _ = self._generate(*self.evaluated(state), batch["noise"], False)
        real_logits, _ = self._discriminate(state.params, state.model_state, batch["image"], None, False)
        fake_logits, _ = self._discriminate(state.params, state.model_state, fakes, None, False)
        sums = {
            "d_real_correct": jnp.sum((real_logits > 0) * weight),
            "d_fake_correct": jnp.sum((fake_logits < 0) * weight),
            "weight": weight.sum(),
        }
        if self.extract_features is None:
            return sums
        images = {"real": batch["image"], "fake": fakes}
        if AVERAGE in state.model_state:  # the last step's generator beside it: what the average gains
            images["last_step"] = self._generate(state.params, state.model_state, batch["noise"], False)[0]
        for name, x in images.items():
            features, logits = self.extract_features(x)
            moments = metrics.feature_moments(features, weight)
            sums[f"{name}_sum"], sums[f"{name}_outer"] = moments["sum"], moments["outer"]
            sums[f"{name}_classes"] = jnp.sum(
                jax.nn.one_hot(jnp.argmax(logits, -1), logits.shape[-1]) * weight[:, None], 0
            )
        return sums

    def summarize_eval(self, totals: dict[str, np.ndarray]) -> dict[str, float]:
        n = float(totals["weight"])
        result = {
            "d_real_accuracy": float(totals["d_real_correct"] / n),
            "d_fake_accuracy": float(totals["d_fake_correct"] / n),
        }
        if "real_sum" in totals:
            real = metrics.gaussian_from_moments(totals["real_sum"], totals["real_outer"], n)
            fake = metrics.gaussian_from_moments(totals["fake_sum"], totals["fake_outer"], n)
            result |= {
                "fd_fashion": metrics.frechet_distance(*fake, *real),
                "class_entropy": metrics.class_entropy(totals["fake_classes"]),
                "real_class_entropy": metrics.class_entropy(totals["real_classes"]),
            }
        if "last_step_sum" in totals:
            last_step = metrics.gaussian_from_moments(totals["last_step_sum"], totals["last_step_outer"], n)
            result |= {
                "fd_fashion_last_step": metrics.frechet_distance(*last_step, *real),
                "class_entropy_last_step": metrics.class_entropy(totals["last_step_classes"]),
            }
        return result

    # --- data ------------------------------------------------------------------------------------

    def eval_batches(self, max_batches: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """The evaluation split's images, each batch with its own fixed noise, so every evaluation of a
        generator sees the same noise."""
        for index, batch in enumerate(self.data.eval_batches(max_batches)):
            rng = np.random.default_rng([self.config.train.seed, index, jax.process_index()])
            noise = rng.standard_normal((len(batch["weight"]), self.noise_dim), dtype=np.float32)
            yield batch | {"noise": noise}

    # --- sampling --------------------------------------------------------------------------------

    def sample(self, state: TrainState, rng: jax.Array, **options: Any) -> ImageSamples:
        """`num_samples` images from the noise of `rng`: the same seed gives the same grid."""
        o = sample_options(self.config.sample, options)
        noise = jax.random.normal(rng, (int(o["num_samples"]), self.noise_dim))
        generate = jax.jit(lambda state, z: self._generate(*self.evaluated(state), z, False)[0])
        return ImageSamples(np.asarray(generate(state, noise)), int(o["columns"]))

    def write_samples(self, outputs: ImageSamples, directory: pathlib.Path, name: str) -> list[pathlib.Path]:
        picture = visualize.grid(visualize.to_uint8(outputs.images), outputs.columns)
        return [visualize.save_png(picture, directory / f"{name}.png", scale=2)]
