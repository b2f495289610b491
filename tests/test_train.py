"""Shared plumbing: config overrides, mesh, sharded steps, checkpoint resume, the NaN guard."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aigc_jax import metrics
from aigc_jax.errors import UserError
from aigc_jax.systems import gpt_shakespeare
from aigc_jax.train import config as config_lib
from aigc_jax.train import loop, losses, optim, writer
from aigc_jax.train import mesh as mesh_lib
from aigc_jax.train.checkpoint import Checkpointer
from aigc_jax.train.state import abstract_train_state, create_train_state
from tests.helpers import host, smoke_system


def test_overrides_are_typed_and_checked():
    config = gpt_shakespeare.get_config("smoke")
    updated = config_lib.apply_overrides(
        config,
        config_lib.parse_overrides(
            [
                "--config.optim.learning_rate=1",
                "--config.mesh.shape",
                "[2,2,2]",
                "--config.sample.prompt=To be",
                "--config.model.dropout=0.1",
            ]
        ),
    )
    assert updated.optim.learning_rate == 1.0 and isinstance(updated.optim.learning_rate, float)
    assert updated.mesh.shape == (2, 2, 2)
    assert updated.sample.prompt == "To be"
    assert config.optim.learning_rate != 1.0  # the original is untouched
    with pytest.raises(UserError, match=r"Did you mean --config\.train\.num_steps"):
        config_lib.apply_overrides(config, {"train.num_step": "3"})
    with pytest.raises(UserError, match="not a valid int"):
        config_lib.apply_overrides(config, {"train.num_steps": "many"})
    with pytest.raises(UserError, match="is a float"):
        config_lib.apply_overrides(config, {"train.num_steps": "2.5"})


def test_config_round_trips_through_json():
    config = gpt_shakespeare.get_config("cpu")
    assert config_lib.from_json(config_lib.to_json(config)) == config


def test_mesh_shape_fills_and_checks():
    assert mesh_lib.mesh_shape((-1, 1, 2), 8) == (4, 1, 2)
    with pytest.raises(UserError, match="needs 6 devices"):
        mesh_lib.mesh_shape((3, 1, 2), 8)
    with pytest.raises(UserError, match="at most one -1"):
        mesh_lib.mesh_shape((-1, -1, 2), 8)


def test_a_cpu_split_asked_for_after_jax_set_up_its_devices_is_reported_not_applied(capsys):
    assert len(jax.devices()) == 8  # the tests' simulated devices, set up before any test runs
    mesh_lib.split_cpu_host(0)  # the default: leave the host as JAX set it up
    mesh_lib.split_cpu_host(8)  # already so
    assert capsys.readouterr().err == ""
    mesh_lib.split_cpu_host(2)
    assert "config.mesh.cpu_devices=2 not applied: JAX set up 8 CPU devices" in capsys.readouterr().err
    assert len(jax.devices()) == 8
    with pytest.raises(UserError, match="cpu_devices must be 0"):
        mesh_lib.split_cpu_host(-1)


def _two_steps(workdir, shape, devices):
    system = smoke_system(workdir)
    mesh = mesh_lib.make_mesh(shape, devices)
    with loop.activate(mesh):
        state, shardings = create_train_state(system.init_variables, system.tx, mesh, jax.random.PRNGKey(0))
        train_step, _ = loop.jit_steps(system, shardings, mesh)
        batches = iter(system.train_dataset())
        for _ in range(2):
            state, metrics = train_step(state, mesh_lib.shard_batch(next(batches), mesh))
    return host(state.params), host(metrics), state


@pytest.mark.parametrize("shape", [(4, 1, 2), (1, 8, 1), (2, 2, 2)], ids=["data4xtensor2", "fsdp8", "2x2x2"])
def test_sharded_step_equals_single_device_step(tmp_path, shape):
    single_params, single_metrics, _ = _two_steps(tmp_path, (1, 1, 1), jax.devices()[:1])
    params, metrics, state = _two_steps(tmp_path, shape, jax.devices())
    kernel = state.params["h_0"]["mlp"]["fc"]["kernel"]
    assert len(kernel.sharding.device_set) == 8 and not kernel.sharding.is_fully_replicated
    np.testing.assert_allclose(metrics["loss"], single_metrics["loss"], rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5), params, single_params)


def test_resume_equals_an_uninterrupted_run(tmp_path):
    overrides = {"train.num_steps": "20", "train.checkpoint_every": "10", "train.eval_every": "0"}
    full_dir, resumed_dir = tmp_path / "full", tmp_path / "resumed"
    mesh = mesh_lib.make_mesh((-1, 1, 1))
    loop.fit(smoke_system(full_dir, **overrides), full_dir, mesh)
    # An interrupted run: the same workdir as it stood after step 10.
    shutil.copytree(full_dir, resumed_dir)
    shutil.rmtree(resumed_dir / "checkpoints" / "20")
    loop.fit(smoke_system(resumed_dir, **overrides), resumed_dir, mesh)
    with loop.activate(mesh):
        full = host(loop.restore_state(smoke_system(full_dir, **overrides), full_dir, mesh))
        resumed = host(loop.restore_state(smoke_system(resumed_dir, **overrides), resumed_dir, mesh))
    assert int(resumed.step) == 20
    jax.tree.map(np.testing.assert_array_equal, resumed.params, full.params)
    jax.tree.map(np.testing.assert_array_equal, resumed.opt_state, full.opt_state)
    # Without the data iterator's state the resumed run would read other batches (checked in test_data).
    logged = [json.loads(line) for line in (resumed_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if r["split"] == "train"][-2:] == [15, 20]


def test_logged_train_seconds_sums_every_run_and_counts_a_relogged_step_once(tmp_path):
    # (step, mean step time of the interval ending there); the run that logged 15 at 3.0 s per step
    # stopped before its next checkpoint, and the resumed run logged 15 again
    train_records = [(5, 1.0), (10, 2.0), (15, 3.0), (15, 0.5), (20, 4.0)]
    lines = [{"step": 10, "split": "eval", "loss": 1.0}]
    lines += [{"step": step, "split": "train", "step_time": seconds} for step, seconds in train_records]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert writer.logged_train_seconds(tmp_path, 20) == 5 * 1.0 + 5 * 2.0 + 5 * 0.5 + 5 * 4.0
    assert writer.logged_train_seconds(tmp_path, 10) == 5 * 1.0 + 5 * 2.0
    with (tmp_path / "metrics.jsonl").open("a") as log:
        log.write('{"step": 25, "split": "tra')  # a run killed while writing its log
    assert writer.logged_train_seconds(tmp_path, 30) == 5 * 1.0 + 5 * 2.0 + 5 * 0.5 + 5 * 4.0
    with pytest.raises(UserError, match=r"no metrics\.jsonl"):
        writer.logged_train_seconds(tmp_path / "copied_checkpoints_only", 10)


def test_checkpoint_restores_onto_another_mesh(tmp_path):
    system = smoke_system(tmp_path)
    one = mesh_lib.make_mesh((1, 1, 1), jax.devices()[:1])
    eight = mesh_lib.make_mesh((2, 2, 2))
    with loop.activate(one):
        state, _ = create_train_state(system.init_variables, system.tx, one, jax.random.PRNGKey(0))
    checkpointer = Checkpointer(tmp_path)
    checkpointer.save(0, state)
    checkpointer.wait()
    with loop.activate(eight):
        restored = checkpointer.restore(abstract_train_state(system.init_variables, system.tx, eight))
    checkpointer.close()
    kernel = restored.params["h_0"]["mlp"]["fc"]["kernel"]
    assert len(kernel.sharding.device_set) == 8
    jax.tree.map(np.testing.assert_array_equal, host(restored.params), host(state.params))


def test_divergence_stops_with_a_message_and_keeps_the_checkpoint(tmp_path):
    mesh = mesh_lib.make_mesh((-1, 1, 1))
    loop.fit(smoke_system(tmp_path, **{"train.num_steps": "10"}), tmp_path, mesh)
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    exploding = {
        "train.num_steps": "30",
        "optim.learning_rate": "1e12",
    }
    with pytest.raises(UserError, match=r"diverged at step \d+.*last good checkpoint \(step 10\)"):
        loop.fit(smoke_system(tmp_path, **exploding), tmp_path, mesh)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before


def test_a_diverging_last_update_is_reported_and_its_checkpoint_named(tmp_path):
    # A step's loss is computed before its update, so the update before a checkpoint is checked by the
    # final evaluation, and on resume by the first loss, which must name that checkpoint, not call it good.
    mesh = mesh_lib.make_mesh((-1, 1, 1))
    loop.fit(smoke_system(tmp_path, **{"train.num_steps": "10"}), tmp_path, mesh)
    one_exploding_step = {"train.num_steps": "11", "optim.learning_rate": "1e12", "optim.warmup_steps": "0"}
    with pytest.raises(UserError, match=r"diverged in its last update.*checkpoint 11 holds those weights"):
        loop.fit(smoke_system(tmp_path, **one_exploding_step), tmp_path, mesh)
    assert not (tmp_path / "eval.json").read_text().count("NaN")  # still the step-10 evaluation
    with pytest.raises(
        UserError, match=r"diverged at step 12.*checkpoint 11 holds the weights that diverged"
    ):
        loop.fit(smoke_system(tmp_path, **{"train.num_steps": "20"}), tmp_path, mesh)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["10", "11"]


@pytest.mark.parametrize("damaged", ['{"name": "gpt_sh', "[1, 2]", "{}", '{"name": 3}'])
def test_a_damaged_workdir_config_is_a_user_error(tmp_path, damaged):
    (tmp_path / config_lib.CONFIG_FILE).write_text(damaged)
    with pytest.raises(UserError, match=r"config\.json is damaged"):
        config_lib.load_workdir_config(tmp_path)
    with pytest.raises(UserError, match=r"config\.json is damaged"):
        config_lib.check_workdir(tmp_path, smoke_system(tmp_path).config)


def test_fit_refuses_a_batch_that_does_not_split_over_the_data_shards(tmp_path):
    mesh = mesh_lib.make_mesh((-1, 1, 1))  # 8 simulated devices
    with pytest.raises(UserError, match="batch_size 12 does not divide over the 8"):
        loop.fit(smoke_system(tmp_path, **{"train.batch_size": "12"}), tmp_path, mesh)
    assert not (tmp_path / "checkpoints").exists()


def test_cross_entropy_label_smoothing_mixes_in_the_uniform_target():
    logits = jax.random.normal(jax.random.PRNGKey(0), (4, 3, 5))
    labels = jax.random.randint(jax.random.PRNGKey(1), (4, 3), 0, 5)
    log_p = jax.nn.log_softmax(logits)
    nll = -np.take_along_axis(np.asarray(log_p), np.asarray(labels)[..., None], -1)[..., 0]
    np.testing.assert_allclose(losses.cross_entropy(logits, labels), nll, rtol=1e-6)
    # target (1 - s) * one_hot + s / C: the loss is (1 - s) * NLL + s * the mean of -log p over classes
    smoothed = 0.8 * nll + 0.2 * -np.mean(np.asarray(log_p), axis=-1)
    np.testing.assert_allclose(losses.cross_entropy(logits, labels, 0.2), smoothed, rtol=1e-5)


def test_soft_jaccard_of_confident_logits_is_one_minus_the_mean_iou():
    labels = jax.random.randint(jax.random.PRNGKey(0), (4, 8, 8), 0, 5)
    guesses = jax.random.randint(jax.random.PRNGKey(1), (4, 8, 8), 0, 5)
    predicted = jnp.where(jax.random.uniform(jax.random.PRNGKey(2), labels.shape) < 0.6, labels, guesses)
    confusion = np.asarray(metrics.confusion_matrix(labels, predicted, 5, jnp.ones(labels.shape)))
    confident = 100.0 * jax.nn.one_hot(predicted, 5)  # softmax: the one-hot prediction
    loss = float(losses.soft_jaccard(confident, labels, smooth=0.0))
    assert abs(loss - (1.0 - metrics.mean_iou(confusion))) < 1e-5
    assert float(losses.soft_jaccard(100.0 * jax.nn.one_hot(labels, 5), labels)) < 1e-6
    # a class absent from both truth and prediction counts as matched (IoU 1), not as a miss
    assert float(losses.soft_jaccard(100.0 * jax.nn.one_hot(labels, 6), labels)) < 1e-6


def _sorted_lovasz_softmax(logits: jax.Array, labels: jax.Array) -> float:
    """The Lovász-softmax as its paper computes it (a sort per class), for reference."""
    num_classes = logits.shape[-1]
    probs = np.asarray(jax.nn.softmax(logits, -1)).reshape(-1, num_classes)
    truth = np.eye(num_classes)[np.asarray(labels).reshape(-1)]
    per_class = []
    for c in np.flatnonzero(truth.sum(0)):
        errors = np.abs(truth[:, c] - probs[:, c])
        order = np.argsort(-errors, kind="stable")
        is_c = truth[order, c]
        count = is_c.sum()
        loss_at_k = 1.0 - (count - np.cumsum(is_c)) / (count + np.cumsum(1.0 - is_c))
        per_class.append(np.sum(errors[order] * np.diff(loss_at_k, prepend=0.0)))
    return float(np.mean(per_class))


def test_lovasz_softmax_is_the_sorted_lovasz_extension_and_one_minus_iou_at_one_hot():
    labels = jax.random.randint(jax.random.PRNGKey(0), (4, 8, 8), 0, 5)
    guesses = jax.random.randint(jax.random.PRNGKey(1), (4, 8, 8), 0, 6)
    predicted = jnp.where(jax.random.uniform(jax.random.PRNGKey(2), labels.shape) < 0.6, labels, guesses)
    confident = 100.0 * jax.nn.one_hot(predicted, 7)  # classes 5 (predicted only) and 6 (neither) absent
    confusion = np.asarray(metrics.confusion_matrix(labels, predicted, 7, jnp.ones(labels.shape)))
    union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    # averaged over the classes present in the labels: 0..4 (6 has an empty union)
    iou = np.diag(confusion)[:5] / union[:5]
    assert abs(float(losses.lovasz_softmax(confident, labels)) - (1.0 - iou.mean())) < 1e-5
    logits = 3.0 * jax.random.normal(jax.random.PRNGKey(3), (4, 8, 8, 7))
    loss, grads = jax.value_and_grad(losses.lovasz_softmax)(logits, labels)
    assert abs(float(loss) - _sorted_lovasz_softmax(logits, labels)) < 1e-3  # binned, not sorted
    assert bool(jnp.isfinite(grads).all()) and float(jnp.abs(grads).sum()) > 0


def test_a_shared_network_optimizer_updates_its_network_with_a_state_of_its_own():
    params = {"net": jnp.ones(3), "other": jnp.ones(2)}
    tx = optim.PerNetwork(
        (("net", optax.adam(0.1)), ("other", optax.adam(0.1)), ("second", optax.adam(0.1))),
        shares=(("second", "net"),),
    )
    state = tx.init(params)
    updates, new_state = tx.update({"second": jnp.ones(3)}, state, params)
    assert np.all(np.asarray(updates["net"]) < 0) and not np.any(np.asarray(updates["other"]))
    for name in ("net", "other"):  # the other optimizers' states are untouched
        jax.tree.map(np.testing.assert_array_equal, new_state[name], state[name])
    assert int(new_state["second"][0].count) == 1
    with pytest.raises(AssertionError, match="two optimizers update one network"):
        tx.update({"net": jnp.ones(3), "second": jnp.ones(3)}, state, params)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_warmup_zero_trains_at_the_peak_rate_from_the_first_step(schedule):
    config = optim.default_config()
    config.update(schedule=schedule, learning_rate=0.5, warmup_steps=0, min_learning_rate_ratio=0.1)
    rate = optim.learning_rate_schedule(config, total_steps=100)
    assert float(rate(0)) == pytest.approx(0.5)
    assert float(rate(100)) == pytest.approx(0.5 if schedule == "constant" else 0.05)
    config.warmup_steps = 10  # warmup starts at rate 0 and reaches the peak after warmup_steps
    rate = optim.learning_rate_schedule(config, total_steps=100)
    assert float(rate(0)) == 0.0 and float(rate(10)) == pytest.approx(0.5)
    config.warmup_steps = -1
    with pytest.raises(UserError, match="warmup_steps"):
        optim.learning_rate_schedule(config, total_steps=100)


def test_gradient_accumulation_updates_every_k_steps_on_a_schedule_of_updates():
    config = optim.default_config()
    config.update(name="sgd", momentum=0.0, learning_rate=1.0, warmup_steps=0, grad_clip_norm=0.0)
    config.update(schedule="cosine", min_learning_rate_ratio=0.1, accumulation_steps=2)
    tx, logged_rate = optim.make_optimizer(config, total_steps=8)  # 4 updates of 2 steps each
    update_rate = optim.learning_rate_schedule(config, total_steps=4)
    params = jnp.zeros(())
    state = tx.init(params)
    for step in range(8):
        before = params
        grad = jnp.asarray(float(step + 1))  # accumulated as a mean over each pair of steps
        updates, state = tx.update(grad, state, params)
        params = optax.apply_updates(params, updates)
        update = step // 2
        expected = -float(update_rate(update)) * (2 * update + 1.5) if step % 2 else 0.0
        assert float(params - before) == pytest.approx(expected), step
        assert float(logged_rate(step)) == pytest.approx(float(update_rate(update)))
    assert float(update_rate(4)) == pytest.approx(0.1)  # the decay ends with the run's last update
