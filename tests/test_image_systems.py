"""The image systems: cnn_fashion, gan_mlp_fashion, dcgan_fashion, unet_fashion_scenes.

Smoke presets run on the 8×8 `digits` (and `fashion_scenes` for the U-Net), so these stay fast."""

import functools
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax import metrics
from aigc_jax.errors import UserError
from aigc_jax.models import convnets
from aigc_jax.systems import cnn_fashion, dcgan_fashion, gan_mlp_fashion, unet_fashion_scenes
from aigc_jax.systems.gan import AVERAGE, STANDING_PASSES
from aigc_jax.train import config as config_lib
from aigc_jax.train import loop
from aigc_jax.train import mesh as mesh_lib
from aigc_jax.train.state import create_train_state, param_count
from tests.helpers import host, run_steps, single_device_mesh, step_flops

FASHION = jnp.zeros((2, 28, 28, 1))
NOISE = jnp.zeros((2, 100))


def _smoke(module, tmp_path, **overrides):
    config = config_lib.apply_overrides(module.get_config("smoke"), overrides)
    return module.build(config, tmp_path)


def _count_and_output(model, x):
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
    output = jax.eval_shape(model.apply, variables, x)
    return param_count(nn.unbox(variables["params"])), output


def test_seed_cnn_is_the_source_network():
    count, (logits, features) = _count_and_output(convnets.SeedCNN(), FASHION)
    # conv 3×3×1×32 + 32; 26×26 → pool 13×13×32 = 5,408 → dense 128; dense 10
    assert count == (9 * 32 + 32) + (5408 * 128 + 128) + (128 * 10 + 10) == 693_962
    assert logits.shape == (2, 10) and features.shape == (2, 128)


def test_vgg_bn_cnn_of_the_cpu_preset():
    m = cnn_fashion.get_config("cpu").model
    model = convnets.VggBnCNN(10, m.stage_features, m.stage_convs, m.hidden, m.dropout)
    count, (logits, features) = _count_and_output(model, FASHION)
    convs = 9 * (1 * 32 + 32 * 64 + 64 * 64 + 64 * 128 + 128 * 128)  # bias-free, BatchNorm after each
    batch_norms = 2 * (32 + 64 + 64 + 128 + 128)
    assert count == convs + batch_norms + (3 * 3 * 128 * 256 + 256) + (256 * 10 + 10) == 575_338
    assert logits.shape == (2, 10) and features.shape == (2, 256)


def test_mlp_gan_is_the_source_network():
    g_count, fakes = _count_and_output(convnets.MlpGenerator(), NOISE)
    d_count, logits = _count_and_output(convnets.MlpDiscriminator(), FASHION)
    assert (
        g_count
        == (100 * 256 + 256) + (256 * 512 + 512) + (512 * 1024 + 1024) + (1024 * 784 + 784)
        == 1_486_352
    )
    assert d_count == (784 * 1024 + 1024) + (1024 * 512 + 512) + (512 * 256 + 256) + (256 + 1) == 1_460_225
    assert fakes.shape == (2, 28, 28, 1) and logits.shape == (2,)


def test_dcgan_shapes_and_counts():
    g_count, fakes = _count_and_output(convnets.DcganGenerator(width=64), NOISE)
    d_count, logits = _count_and_output(convnets.DcganDiscriminator(width=64), FASHION)
    assert g_count == 100 * 7 * 7 * 128 + 2 * 128 + 4 * 4 * 128 * 64 + 2 * 64 + (4 * 4 * 64 + 1) == 759_681
    assert d_count == (4 * 4 * 64 + 64) + 4 * 4 * 64 * 128 + 2 * 128 + (7 * 7 * 128 + 1) == 138_689
    assert fakes.shape == (2, 28, 28, 1) and logits.shape == (2,)


def test_dcgan_quarter_convs_add_3x3_blocks_at_7x7():
    block = 3 * 3 * 128 * 128 + 2 * 128  # bias-free conv of 2w channels, BatchNorm scale and bias
    g_count, fakes = _count_and_output(convnets.DcganGenerator(width=64, quarter_convs=2), NOISE)
    d_count, logits = _count_and_output(convnets.DcganDiscriminator(width=64, quarter_convs=2), FASHION)
    assert (g_count, d_count) == (759_681 + 2 * block, 138_689 + 2 * block)
    assert fakes.shape == (2, 28, 28, 1) and logits.shape == (2,)


def test_dcgan_config_of_a_workdir_from_before_the_blocks_builds_networks_without_them(tmp_path):
    config = dcgan_fashion.get_config("smoke")
    assert (config.model.generator_quarter_convs, config.model.discriminator_quarter_convs) == (2, 2)
    for key in ("generator_quarter_convs", "discriminator_quarter_convs"):
        del config.model[key]  # as in the config.json of a workdir trained before 3c8392e
    system = dcgan_fashion.build(config, tmp_path)
    assert (system.generator.quarter_convs, system.discriminator.quarter_convs) == (0, 0)


def test_unet_shapes_and_count():
    count, logits = _count_and_output(convnets.UNet(11, (16, 32, 64, 128)), jnp.zeros((2, 64, 64, 1)))
    assert logits.shape == (2, 64, 64, 11)

    def block(c_in, c_out):  # two bias-free 3×3 convs, each with BatchNorm (scale + bias)
        return 9 * c_in * c_out + 9 * c_out * c_out + 4 * c_out

    def up(c_in, c_out):  # 2×2 transposed conv with bias
        return 4 * c_in * c_out + c_out

    encoder = block(1, 16) + block(16, 32) + block(32, 64) + block(64, 128)
    decoder = up(128, 64) + block(128, 64) + up(64, 32) + block(64, 32) + up(32, 16) + block(32, 16)
    assert count == encoder + decoder + (16 * 11 + 11) == 482_619


def test_unet_up_convolutions_keep_the_names_of_the_transposed_convolutions_they_replaced():
    variables = jax.eval_shape(
        lambda: convnets.UNet(11, (4, 8, 16)).init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 1)))
    )
    up = {name: layer["kernel"].shape for name, layer in variables["params"].items() if "Transpose" in name}
    assert up == {"ConvTranspose_0": (2, 2, 16, 8), "ConvTranspose_1": (2, 2, 8, 4)}


def test_unet_level_logits_add_deeper_levels_scores_to_the_same_network():
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 16, 16, 1))
    plain = convnets.UNet(11, (4, 8, 16, 32))
    with_levels = plain.clone(level_logits=True)
    variables = with_levels.init(jax.random.PRNGKey(0), x)
    added = {name: layer["kernel"].shape for name, layer in variables["params"].items() if "Logits" in name}
    assert added == {"Logits_down4": (1, 1, 16, 11), "Logits_down2": (1, 1, 8, 11)}
    # the other parameters keep their names: a plain net reads them, and with the added scores zeroed
    # the two nets agree
    shared = {**variables, "params": {k: v for k, v in variables["params"].items() if k not in added}}
    zeroed_params = {
        k: jax.tree.map(jnp.zeros_like, v) if k in added else v for k, v in variables["params"].items()
    }
    zeroed = {**variables, "params": zeroed_params}
    np.testing.assert_allclose(with_levels.apply(zeroed, x), plain.apply(shared, x), atol=1e-6)
    assert not np.allclose(with_levels.apply(variables, x), plain.apply(shared, x), atol=1e-3)


def _fixed_batch(system):
    return next(iter(system.train_dataset()))


def test_classifier_overfits_one_batch(tmp_path):
    system = _smoke(cnn_fashion, tmp_path, **{"model.dropout": "0.0", "optim.schedule": "constant"})
    _, history = run_steps(system, single_device_mesh(), 30, _fixed_batch(system))
    assert history[-1]["loss"] < 0.3 * history[0]["loss"], [h["loss"] for h in history]


# with an IoU loss term (at most 1, near 0.9 at the start) the loss falls less in 30 steps
@pytest.mark.parametrize(
    ("jaccard_weight", "jaccard_loss", "fraction"),
    [("0.0", "soft", 0.5), ("1.0", "soft", 0.6), ("1.0", "lovasz", 0.6)],
)
def test_unet_overfits_one_batch(tmp_path, jaccard_weight, jaccard_loss, fraction):
    system = _smoke(
        unet_fashion_scenes,
        tmp_path,
        **{
            "optim.schedule": "constant",
            "train.jaccard_weight": jaccard_weight,
            "train.jaccard_loss": jaccard_loss,
        },
    )
    _, history = run_steps(system, single_device_mesh(), 30, _fixed_batch(system))
    assert history[-1]["loss"] < fraction * history[0]["loss"], [h["loss"] for h in history]


def test_unet_refuses_an_unknown_jaccard_loss(tmp_path):
    with pytest.raises(UserError, match="use one of: soft, lovasz"):
        _smoke(unet_fashion_scenes, tmp_path, **{"train.jaccard_loss": "dice"})


def test_unet_fresh_training_scenes_follow_the_data_set_rules(tmp_path):
    """`data.fresh_train_scenes`: every batch is new scenes of training items, background exactly where
    the canvas is black, and the training steps run on them."""
    system = _smoke(unet_fashion_scenes, tmp_path, **{"data.fresh_train_scenes": "true"})
    batches = iter(system.train_dataset())
    first, second = next(batches), next(batches)
    assert first["image"].shape == (16, 64, 64, 1) and first["mask"].shape == (16, 64, 64)
    for batch in (first, second):
        np.testing.assert_array_equal(batch["mask"] == 0, batch["image"][..., 0] == -1)
        assert batch["mask"].max() <= 10 and (batch["mask"] > 0).mean() > 0.1
    assert not np.array_equal(first["image"], second["image"])
    _, history = run_steps(system, single_device_mesh(), 2)
    assert all(np.isfinite(h["loss"]) for h in history)
    other = _smoke(
        unet_fashion_scenes, tmp_path, **{"data.fresh_train_scenes": "true", "data.name": "digits"}
    )
    with pytest.raises(UserError, match="composes fashion_scenes collages"):
        other.train_dataset()


def test_unet_flip_averaged_prediction_mirrors_with_the_scene(tmp_path):
    """With `eval.flip_average` the prediction for a mirrored scene is the mirrored prediction (the
    average of both views is left-right symmetric); a single view is not, so the test can tell."""
    scenes = jax.random.uniform(jax.random.PRNGKey(1), (2, 64, 64, 1), minval=-1.0, maxval=1.0)
    mirrored = scenes[:, :, ::-1]
    for average in (True, False):
        system = _smoke(unet_fashion_scenes, tmp_path, **{"eval.flip_average": str(average).lower()})
        mesh = single_device_mesh()
        with loop.activate(mesh):
            state, _ = create_train_state(system.init_variables, system.tx, mesh, jax.random.PRNGKey(0))
        predict = jax.jit(system.predict)
        logits, logits_of_mirrored = (np.asarray(predict(state, x)) for x in (scenes, mirrored))
        assert logits.shape == (2, 64, 64, 11)
        symmetric = np.allclose(logits_of_mirrored, logits[:, :, ::-1], atol=1e-5)
        assert symmetric == average


@pytest.mark.parametrize("module", [gan_mlp_fashion, dcgan_fashion], ids=["mlp", "dcgan"])
def test_gan_generator_moves_toward_one_batch(tmp_path, module):
    """On one repeated real batch, the generator's mean image approaches the batch's mean image."""
    system = _smoke(module, tmp_path, **{"optim.learning_rate": "2e-3", "model.noise_dim": "16"})
    batch = _fixed_batch(system)
    target = batch["image"].mean(axis=0)

    def distance(state):
        with loop.activate(single_device_mesh()):
            fakes = system.sample(state, jax.random.PRNGKey(1), num_samples=64).images
        return float(np.mean((fakes.mean(axis=0) - target) ** 2))

    mesh = single_device_mesh()
    with loop.activate(mesh):
        initial, _ = create_train_state(system.init_variables, system.tx, mesh, jax.random.PRNGKey(0))
    before = distance(initial)
    state, _ = run_steps(system, mesh, 100, batch)
    assert distance(state) < 0.5 * before


@pytest.mark.parametrize(
    ("module", "overrides"),
    [
        (cnn_fashion, {}),
        (dcgan_fashion, {}),
        # three levels, so that the level logits (the preset's two levels have none) run sharded too
        (unet_fashion_scenes, {"model.level_features": "(4, 8, 16)"}),
    ],
    ids=["cnn", "dcgan", "unet"],
)
def test_sharded_step_equals_single_device_step_with_batch_norm(tmp_path, module, overrides):
    system = _smoke(module, tmp_path, **overrides)
    batches = iter(system.train_dataset())
    batch = next(batches)
    single, single_history = run_steps(system, single_device_mesh(), 2, batch)
    sharded, history = run_steps(system, mesh_lib.make_mesh((8, 1, 1)), 2, batch)
    for name in history[-1]:
        np.testing.assert_allclose(history[-1][name], single_history[-1][name], rtol=1e-4, atol=1e-5)
    # BatchNorm statistics of the sharded batch are global: the same as on one device
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
        host(sharded.model_state),
        host(single.model_state),
    )
    # Adam divides each gradient by its own root mean square, so rounding in a near-zero gradient (summed in
    # another order over 8 shards) moves that parameter by a few hundredths of the update (lr 1e-2); a
    # sharding error would move whole updates
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=5e-4), host(sharded.params), host(single.params)
    )


def test_gan_step_splits_its_work_over_the_data_shards(tmp_path):
    # Per-device FLOPs of the compiled step: on 8 data shards each device does ~1/8 of the work. The
    # noise is drawn inside the step (gan.py, shared by both GANs); left unconstrained it was replicated,
    # and every device ran the generator and the discriminator's pass on its fakes for the whole batch
    # (0.83 of the work each).
    system = _smoke(dcgan_fashion, tmp_path)
    batch = next(iter(system.train_dataset()))
    eight_way = step_flops(system, mesh_lib.make_mesh((8, 1, 1)), batch)
    assert eight_way < 0.2 * step_flops(system, single_device_mesh(), batch)


def test_gan_resume_equals_an_uninterrupted_run(tmp_path):
    overrides = {"train.num_steps": "20", "train.checkpoint_every": "10", "train.eval_every": "0"}
    overrides["train.generator_average_decay"] = "0.99"  # the generator's moving average resumes too
    full_dir, resumed_dir = tmp_path / "full", tmp_path / "resumed"
    mesh = mesh_lib.make_mesh((-1, 1, 1))
    loop.fit(_smoke(dcgan_fashion, full_dir, **overrides), full_dir, mesh)
    shutil.copytree(full_dir, resumed_dir)
    shutil.rmtree(resumed_dir / "checkpoints" / "20")
    loop.fit(_smoke(dcgan_fashion, resumed_dir, **overrides), resumed_dir, mesh)
    with loop.activate(mesh):
        full = host(loop.restore_state(_smoke(dcgan_fashion, full_dir, **overrides), full_dir, mesh))
        resumed = host(loop.restore_state(_smoke(dcgan_fashion, resumed_dir, **overrides), resumed_dir, mesh))
    assert int(resumed.step) == 20
    assert set(resumed.params) == set(resumed.opt_state) == {"generator", "discriminator"}
    for part in ("params", "opt_state", "model_state"):
        jax.tree.map(np.testing.assert_array_equal, getattr(resumed, part), getattr(full, part))


def test_gan_generator_average_follows_the_trained_generator_and_is_what_samples(tmp_path):
    system = _smoke(dcgan_fashion, tmp_path, **{"train.generator_average_decay": "0.999"})
    mesh = single_device_mesh()
    with loop.activate(mesh):
        initial, _ = create_train_state(system.init_variables, system.tx, mesh, jax.random.PRNGKey(0))
    jax.tree.map(np.testing.assert_array_equal, initial.model_state[AVERAGE], initial.params["generator"])
    # the first update is at learning rate 0 (warmup), so after two the average is the initial weights
    # moved by the early decay of step 2, (1 + 2) / (10 + 2), not 0.999, toward the trained ones
    state, _ = run_steps(system, mesh, 2, _fixed_batch(system))
    jax.tree.map(
        lambda average, start, trained: np.testing.assert_allclose(
            average, 3 / 12 * start + 9 / 12 * trained, rtol=1e-5, atol=1e-7
        ),
        host(state.model_state[AVERAGE]),
        host(initial.params["generator"]),
        host(state.params["generator"]),
    )
    without_average = state.replace(model_state={k: v for k, v in state.model_state.items() if k != AVERAGE})
    with loop.activate(mesh):
        from_average, from_trained = (
            system.sample(s, jax.random.PRNGKey(5)).images for s in (state, without_average)
        )
    assert not np.allclose(from_average, from_trained)


def test_gan_generator_average_gets_batch_norm_statistics_of_its_own(tmp_path):
    system = _smoke(dcgan_fashion, tmp_path, **{"train.generator_average_decay": "0.999"})
    state, _ = run_steps(system, single_device_mesh(), 3, _fixed_batch(system))
    trained_statistics = state.model_state["generator"]
    far_off = jax.tree.map(lambda x: x + 5.0, trained_statistics)
    evaluated = jax.jit(system.evaluated)
    standing = host(evaluated(state)[1]["generator"])
    from_far_off = host(evaluated(state.replace(model_state={**state.model_state, "generator": far_off}))[1])
    # each training-mode pass keeps 0.9 of the running statistics, so after STANDING_PASSES the start
    # is down to 0.9^40 of itself, whatever it was: the statistics are the average's own
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(b - a, 5.0 * 0.9**STANDING_PASSES, rtol=1e-3),
        standing,
        from_far_off["generator"],
    )
    assert not all(jax.tree.leaves(jax.tree.map(np.allclose, standing, host(trained_statistics))))


def test_gan_discriminator_statistics_follow_the_real_images_too(tmp_path):
    # evaluation reads the discriminator's running statistics on real and generated images alike, so
    # training must not keep only those of the fakes
    system = _smoke(dcgan_fashion, tmp_path)
    batch = _fixed_batch(system)
    brighter = {**batch, "image": np.clip(batch["image"] + 0.5, -1.0, 1.0)}
    statistics = [
        host(run_steps(system, single_device_mesh(), 1, b)[0].model_state["discriminator"])
        for b in (batch, brighter)
    ]
    assert not all(jax.tree.leaves(jax.tree.map(np.allclose, *statistics)))


def test_gan_sampling_is_deterministic_for_a_seed(tmp_path):
    system = _smoke(gan_mlp_fashion, tmp_path)
    mesh = single_device_mesh()
    with loop.activate(mesh):
        state, _ = create_train_state(system.init_variables, system.tx, mesh, jax.random.PRNGKey(0))
        a, b, c = (system.sample(state, jax.random.PRNGKey(s)).images for s in (5, 5, 6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and a.shape == (16, 8, 8, 1) and np.abs(a).max() <= 1.0
    paths = system.write_samples(system.sample(state, jax.random.PRNGKey(5)), tmp_path / "samples", "grid")
    assert paths[0].read_bytes().startswith(b"\x89PNG")


def test_gan_evaluation_measures_fd_and_class_entropy_with_a_trained_classifier(tmp_path):
    classifier_dir = tmp_path / "classifier"
    classifier_config = cnn_fashion.get_config("smoke")
    loop.fit(
        cnn_fashion.build(classifier_config, classifier_dir), classifier_dir, mesh_lib.make_mesh((-1, 1, 1))
    )
    gan = _smoke(
        gan_mlp_fashion,
        tmp_path / "gan",
        # a high rate, so the average and the last step differ by more than the tolerance below
        **{
            "eval.classifier_workdir": str(classifier_dir),
            "train.generator_average_decay": "0.9",
            "optim.learning_rate": "1e-2",
        },
    )
    mesh = mesh_lib.make_mesh((-1, 1, 1))
    result = loop.fit(gan, tmp_path / "gan", mesh)
    assert (tmp_path / "gan" / "samples" / "step_0000020.png").exists()

    # The metrics streamed through the sharded eval step (weighted sums, padded last batch) equal the ones
    # computed at once from the same images: the eval split against its fixed-noise fakes, from the
    # generator's moving average and, as `_last_step`, from its last step's weights.
    with loop.activate(mesh):
        state = loop.restore_state(gan, tmp_path / "gan", mesh)
    generators = {"fake": state.model_state[AVERAGE], "last_step": state.params["generator"]}
    features = {name: [] for name in ("real", *generators)}
    predicted = {name: [] for name in features}
    for batch in gan.eval_batches():
        keep = batch["weight"] > 0
        images = {"real": batch["image"][keep]}
        for name, params in generators.items():
            images[name] = gan.generator.apply(
                {"params": params}, jnp.asarray(batch["noise"][keep]), train=False
            )
        for name, x in images.items():
            batch_features, logits = gan.extract_features(jnp.asarray(x))
            features[name].append(np.asarray(batch_features, np.float64))
            predicted[name].append(np.asarray(logits).argmax(-1))
    stacked = {name: np.concatenate(f) for name, f in features.items()}
    gaussians = {name: (f.mean(0), np.cov(f, rowvar=False)) for name, f in stacked.items()}
    for name, suffix in (("fake", ""), ("last_step", "_last_step")):
        expected_fd = metrics.frechet_distance(*gaussians[name], *gaussians["real"])
        assert result.metrics[f"fd_fashion{suffix}"] == pytest.approx(expected_fd, rel=1e-3)
    assert result.metrics["fd_fashion"] != pytest.approx(result.metrics["fd_fashion_last_step"], rel=1e-2)
    keys = (
        ("fake", "class_entropy"),
        ("last_step", "class_entropy_last_step"),
        ("real", "real_class_entropy"),
    )
    for name, key in keys:
        counts = np.bincount(np.concatenate(predicted[name]), minlength=10)
        assert result.metrics[key] == pytest.approx(metrics.class_entropy(counts), abs=1e-6)


def test_classifier_sample_is_a_confusion_matrix(tmp_path):
    system = _smoke(cnn_fashion, tmp_path)
    mesh = mesh_lib.make_mesh((-1, 1, 1))
    with loop.activate(mesh):
        state, _ = create_train_state(system.init_variables, system.tx, mesh, jax.random.PRNGKey(0))
        report = system.sample(state, jax.random.PRNGKey(0))
    assert report.confusion.shape == (10, 10) and report.confusion.sum() == 180  # the digits validation split
    paths = system.write_samples(report, tmp_path, "report")
    assert [p.suffix for p in paths] == [".png", ".txt"]


def test_flip_averaging_averages_the_probabilities_of_an_image_and_its_mirror(tmp_path):
    plain = _smoke(cnn_fashion, tmp_path)
    averaged = _smoke(cnn_fashion, tmp_path, **{"eval.flip_average": "true"})
    images = jax.random.normal(jax.random.PRNGKey(1), (3, 8, 8, 1))
    mesh = single_device_mesh()
    with loop.activate(mesh):
        state, _ = create_train_state(plain.init_variables, plain.tx, mesh, jax.random.PRNGKey(0))
        p = jax.nn.softmax(plain.predict(state, images))
        p_mirror = jax.nn.softmax(plain.predict(state, images[:, :, ::-1]))
        log_p_average = averaged.predict(state, images)
    np.testing.assert_allclose(jnp.exp(log_p_average), (p + p_mirror) / 2, rtol=1e-5, atol=1e-7)


def test_shift_averaging_averages_the_flipped_and_shifted_views(tmp_path):
    plain = _smoke(cnn_fashion, tmp_path)
    averaged = _smoke(cnn_fashion, tmp_path, **{"eval.flip_average": "true", "eval.shift_average": "true"})
    images = jax.random.normal(jax.random.PRNGKey(1), (3, 8, 8, 1))
    moved_down = cnn_fashion.shift_one_pixel(images, 1, 0)
    np.testing.assert_array_equal(moved_down[:, 1:], images[:, :-1])
    np.testing.assert_array_equal(moved_down[:, 0], -1.0)
    mesh = single_device_mesh()
    with loop.activate(mesh):
        state, _ = create_train_state(plain.init_variables, plain.tx, mesh, jax.random.PRNGKey(0))
        views = [images, images[:, :, ::-1]]
        views += [
            cnn_fashion.shift_one_pixel(v, dy, dx)
            for v in views
            for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1))
        ]
        p_mean = np.mean([jax.nn.softmax(plain.predict(state, v)) for v in views], axis=0)
        log_p_average = averaged.predict(state, images)
    np.testing.assert_allclose(jnp.exp(log_p_average), p_mean, rtol=1e-5, atol=1e-7)


def test_reshape_max_pool_equals_linen_max_pool():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 9, 3))
    linen_pool = functools.partial(nn.max_pool, window_shape=(2, 2), strides=(2, 2))
    np.testing.assert_array_equal(convnets.max_pool_2x2(x), linen_pool(x))
    # Linen gives a tied window's gradient to its first maximum, jnp.max splits it: they agree only
    # without ties, which this input must have (one maximum per window)
    at_max = convnets._windows(x) == convnets._pooled(x)[:, :, None, :, None]
    assert int(at_max.sum()) == convnets._pooled(x).size
    g = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 4, 3))
    ours = jax.vjp(convnets.max_pool_2x2, x)[1](g)[0]
    np.testing.assert_array_equal(ours, jax.vjp(linen_pool, x)[1](g)[0])


def test_max_pool_gradient_is_jnp_max_gradient_ties_included():
    x = jnp.round(jax.random.normal(jax.random.PRNGKey(0), (2, 9, 7, 3)) * 2) / 2  # many tied windows
    g = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 3, 3))
    ours = jax.vjp(convnets.max_pool_2x2, x)[1](g)[0]
    # the same reshape + max without the custom gradient: JAX differentiates its `jnp.max`
    np.testing.assert_array_equal(ours, jax.vjp(convnets._pooled, x)[1](g)[0])
    tied = jnp.array([[3.0, 3.0], [1.0, 0.0]]).reshape(1, 2, 2, 1)
    gradient = jax.grad(lambda x: 2.0 * convnets.max_pool_2x2(x).sum())(tied)
    np.testing.assert_array_equal(gradient.reshape(2, 2), [[1.0, 1.0], [0.0, 0.0]])


def _assert_same_layer(ours, linen, x, random_bias=False):
    """`ours` has `linen`'s parameter shapes and computes its outputs and gradients (parameters and input)."""
    variables = linen.init(jax.random.PRNGKey(1), x)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.PRNGKey(1), x)) == jax.tree.map(jnp.shape, variables)
    if random_bias:  # zero at init, which would hide a misplaced bias
        bias = variables["params"]["bias"]
        variables["params"]["bias"] = jax.random.normal(jax.random.PRNGKey(2), bias.shape)

    def loss(module, variables, x):
        return jnp.sum(jnp.sin(module.apply(variables, x)))

    np.testing.assert_allclose(ours.apply(variables, x), linen.apply(variables, x), atol=1e-5)
    grads_ours = jax.grad(loss, argnums=(1, 2))(ours, variables, x)
    grads_linen = jax.grad(loss, argnums=(1, 2))(linen, variables, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4), grads_ours, grads_linen)


def test_phase_transposed_conv_equals_linen_transposed_conv():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 6, 3))
    linen = nn.ConvTranspose(4, (4, 4), strides=(2, 2), use_bias=False)
    _assert_same_layer(convnets.ConvTranspose4x4Stride2(4), linen, x)


def test_up_convolution_equals_linen_transposed_convolution():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 6, 3))
    _assert_same_layer(
        convnets.UpConv2x2(4), nn.ConvTranspose(4, (2, 2), strides=(2, 2)), x, random_bias=True
    )


@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_equals_linen_batch_norm(train):
    x = 3.0 + 2.0 * jax.random.normal(jax.random.PRNGKey(0), (4, 5, 6, 3))
    linen = nn.BatchNorm(use_running_average=not train, momentum=0.9)
    ours = convnets.BatchNorm(use_running_average=not train)
    variables = linen.init(jax.random.PRNGKey(1), x)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.PRNGKey(1), x)) == jax.tree.map(jnp.shape, variables)
    # non-trivial parameters and running statistics, so every term of the function is checked
    noise = jax.random.PRNGKey(2)
    variables = jax.tree.map(lambda v: v + 0.5 * jax.random.uniform(noise, v.shape), variables)

    def loss(module, params, x):
        y, updates = module.apply(
            {"params": params, "batch_stats": variables["batch_stats"]}, x, mutable=["batch_stats"]
        )
        return jnp.sum(jnp.sin(y)), (y, updates)

    (_, (y_ours, stats_ours)), grads_ours = jax.value_and_grad(loss, argnums=(1, 2), has_aux=True)(
        ours, variables["params"], x
    )
    (_, (y_linen, stats_linen)), grads_linen = jax.value_and_grad(loss, argnums=(1, 2), has_aux=True)(
        linen, variables["params"], x
    )
    np.testing.assert_allclose(y_ours, y_linen, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), stats_ours, stats_linen)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4), grads_ours, grads_linen)
