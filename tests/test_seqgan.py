"""SeqGAN: network sizes, the oracle, token draws, rollouts, MLE and policy-gradient learning, sharding,
resume, Shakespeare lines, and the text metrics (BLEU-4, self-BLEU, distinct-n)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import sacrebleu

from aigc_jax import metrics
from aigc_jax.models import seqgan as nets
from aigc_jax.systems import seqgan
from aigc_jax.train import config as config_lib
from aigc_jax.train import loop
from aigc_jax.train import mesh as mesh_lib
from aigc_jax.train.checkpoint import Checkpointer
from aigc_jax.train.state import abstract_train_state, create_train_state, param_count
from tests.helpers import host, run_steps, single_device_mesh, step_flops

# Every phase within four steps: 0 MLE, 1 discriminator, 2 policy gradient, 3 discriminator.
ALL_PHASES = {"phases.mle_steps": "1", "phases.d_pretrain_steps": "1", "phases.d_steps": "1"}


def _smoke(tmp_path, **overrides):
    return seqgan.build(config_lib.apply_overrides(seqgan.get_config("smoke"), overrides), tmp_path)


def _generator(vocab=10, embed=8, hidden=8):
    model = nets.LstmGenerator(vocab, embed, hidden)
    return model, nets.init_generator(model, jax.random.PRNGKey(0))["params"]


def test_paper_sized_networks_have_the_formula_parameter_counts():
    V, E, H, T = 5000, 32, 32, 20
    generator = nets.LstmGenerator(V, E, H)
    shapes = jax.eval_shape(lambda rng: nets.init_generator(generator, rng), jax.random.PRNGKey(0))
    # embedding + LSTM (4 gates: input kernel, recurrent kernel, bias) + output layer
    assert param_count(shapes["params"]) == V * E + 4 * (E * H + H * H + H) + (H * V + V) == 333_320
    m = seqgan.get_config("full").model
    d = nets.CnnDiscriminator(V, m.d_embed_dim, m.d_filter_sizes, m.d_num_filters, m.d_dropout)
    d_shapes = jax.eval_shape(d.init, jax.random.PRNGKey(0), jnp.zeros((2, T), jnp.int32))
    F = sum(m.d_num_filters)
    convs = sum(w * 64 * f + f for w, f in zip(m.d_filter_sizes, m.d_num_filters, strict=True))
    assert F == 1720
    assert param_count(d_shapes["params"]) == V * 64 + convs + 2 * (F * F + F) + (F + 1) == 7_043_681
    assert jax.eval_shape(d.apply, d_shapes, jnp.zeros((3, T), jnp.int32)).shape == (3,)
    model, params = _generator()
    carries, logits = nets.teacher_forced(model, params, jnp.zeros((3, 7), jnp.int32))
    assert logits.shape == (3, 7, 10) and carries[0].shape == (7, 3, 8)


def test_oracle_data_is_deterministic_for_its_seed():
    config = seqgan.get_config("smoke")
    a = seqgan.oracle_splits(config)
    seqgan._ORACLE_DATA.clear()  # sample again, not from the per-process cache
    b = seqgan.oracle_splits(config)
    config.data.oracle_seed = 1
    c = seqgan.oracle_splits(config)
    assert a["train"].shape == (256, 8) and a["eval"].shape == (64, 8)
    np.testing.assert_array_equal(a["train"], b["train"])
    np.testing.assert_array_equal(a["eval"], b["eval"])
    assert not np.array_equal(a["train"], c["train"])
    assert not np.array_equal(a["train"][:64], a["eval"])  # the splits are different draws


def test_draw_follows_the_softmax():
    probs = np.array([0.5, 0.0, 0.2, 0.1, 0.15, 0.05, 0.0])
    logits_NV = jnp.broadcast_to(jnp.log(jnp.asarray(probs) + 1e-30), (40_000, 7))
    u_N = jax.random.uniform(jax.random.PRNGKey(0), (40_000,))
    tokens = np.asarray(jax.jit(nets.draw)(logits_NV, u_N))
    np.testing.assert_allclose(np.bincount(tokens, minlength=7) / 40_000, probs, atol=0.01)
    assert not np.any(np.isin(tokens, [1, 6]))  # zero-probability tokens are never drawn


def test_rollouts_keep_each_prefix_and_complete_it_with_the_generator():
    model, params = _generator()
    # a generator that always says token 3
    params = {**params, "out": {**params["out"], "bias": params["out"]["bias"].at[3].set(100.0)}}
    rollouts = jax.jit(functools.partial(nets.rollouts, model), static_argnums=2)
    for T in (6, 7):  # an odd and an even number of prefixes
        tokens_BT = jax.random.randint(jax.random.PRNGKey(T), (2, T), 4, 10)
        completed = np.asarray(rollouts(params, tokens_BT, 3, jax.random.PRNGKey(1)))
        assert completed.shape == (T - 1, 3, 2, T)
        for t in range(1, T):
            np.testing.assert_array_equal(
                completed[t - 1, :, :, :t], np.broadcast_to(tokens_BT[:, :t], (3, 2, t))
            )
            assert np.all(completed[t - 1, :, :, t:] == 3)


def test_rewards_are_rollout_means_of_the_discriminator():
    model, params = _generator()
    tokens_BT = jax.random.randint(jax.random.PRNGKey(0), (4, 5), 0, 10)

    def share_of_sevens(x_NT):  # a "discriminator": the share of token 7 in a sequence
        return jnp.mean(x_NT == 7, axis=-1)

    @jax.jit
    def rewards_and_rollouts(params, tokens_BT, rng):
        rewards = nets.rollout_rewards(model, params, tokens_BT, 8, rng, share_of_sevens)
        return rewards, nets.rollouts(model, params, tokens_BT, 8, rng)

    rewards, completed = rewards_and_rollouts(params, tokens_BT, jax.random.PRNGKey(1))
    np.testing.assert_allclose(rewards[:, :-1], share_of_sevens(completed).mean(axis=1).T, rtol=1e-6)
    np.testing.assert_allclose(rewards[:, -1], share_of_sevens(tokens_BT), rtol=1e-6)


def test_policy_gradient_with_a_fixed_reward_moves_probability_to_rewarded_tokens():
    model, params = _generator()
    tokens_BT = jax.random.randint(jax.random.PRNGKey(0), (16, 6), 0, 10)
    rewards_BT = (tokens_BT == 3).astype(jnp.float32)  # only token 3 earns a reward
    tx = optax.adam(1e-2)

    @jax.jit
    def step(params, opt_state):
        grads = jax.grad(lambda p: nets.policy_gradient_loss(model, p, tokens_BT, rewards_BT))(params)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state

    @jax.jit
    def mean_probability_of_3(params):
        _, logits = nets.teacher_forced(model, params, tokens_BT)
        return jnp.mean(jax.nn.softmax(logits)[..., 3])

    before, opt_state = mean_probability_of_3(params), tx.init(params)
    for _ in range(20):
        params, opt_state = step(params, opt_state)
    assert mean_probability_of_3(params) > 2 * before, (before, mean_probability_of_3(params))


def test_phases_follow_the_step():
    system = _smoke(".", **{"phases.mle_steps": "3", "phases.d_pretrain_steps": "2", "phases.d_steps": "2"})
    phases = [int(system.phase(jnp.int32(step))) for step in range(11)]
    assert phases == [0, 0, 0, 1, 1, 2, 1, 1, 2, 1, 1]


def test_a_separate_policy_gradient_optimizer_keeps_pretraining_moments_apart(tmp_path):
    """With `pg.separate_optimizer`, the policy-gradient steps (2 and 4) move the generator through an
    optimizer state of their own: the MLE optimizer's state stays as step 0 left it. (Its constant
    schedule's one warm-up step has learning rate 0, so the first policy-gradient step moves nothing.)"""
    system = _smoke(tmp_path, **ALL_PHASES, **{"pg.separate_optimizer": "true"})
    mesh = single_device_mesh()
    with loop.activate(mesh):
        state, shardings = create_train_state(system.init_variables, system.tx, mesh, jax.random.PRNGKey(0))
        train_step, _ = loop.jit_steps(system, shardings, mesh)
        batches, states, phases = iter(system.train_dataset()), [], []
        for _ in range(5):
            state, metrics = train_step(state, mesh_lib.shard_batch(next(batches), mesh))
            states.append(host(state))
            phases.append(int(metrics["phase"]))
    after_mle, after_pg = states[0], states[-1]
    assert phases == [0, 1, 2, 1, 2]
    assert set(after_pg.opt_state) == {"generator", "discriminator", "policy_gradient"}
    jax.tree.map(
        np.testing.assert_array_equal, after_pg.opt_state["generator"], after_mle.opt_state["generator"]
    )
    counts = [int(c) for c in jax.tree.leaves(after_pg.opt_state["policy_gradient"]) if np.ndim(c) == 0]
    assert counts and set(counts) == {2}, counts  # two Adam updates, from fresh moments
    moved = jax.tree.map(
        lambda a, b: np.abs(a - b).max(), after_pg.params["generator"], after_mle.params["generator"]
    )
    assert max(jax.tree.leaves(moved)) > 0
    shared = _smoke(tmp_path, **ALL_PHASES, **{"pg.separate_optimizer": "false"})
    assert [name for name, _ in shared.tx.transforms] == ["generator", "discriminator"]


def test_mle_steps_lower_the_nll_of_a_small_batch(tmp_path):
    overrides = {"phases.adversarial": "false", "optim.learning_rate": "3e-2", "model.hidden_dim": "32"}
    system = _smoke(tmp_path, **overrides)
    batch = next(iter(system.train_dataset()))
    _, history = run_steps(system, single_device_mesh(), 40, batch)
    losses = [h["mle_loss"] for h in history]
    assert losses[-1] < 0.5 * losses[0], losses


def test_sharded_resumed_steps_equal_uninterrupted_single_device_steps(tmp_path):
    """Six steps through every phase on 8 devices, saved after 3 and resumed from the checkpoint (both
    networks, both optimizer states, the data iterator), equal 6 uninterrupted steps on 8 devices and
    6 steps on one device."""
    system = _smoke(tmp_path, **ALL_PHASES)
    mesh = mesh_lib.make_mesh((8, 1, 1))
    checkpointer = Checkpointer(tmp_path)
    with loop.activate(mesh):
        state, shardings = create_train_state(system.init_variables, system.tx, mesh, jax.random.PRNGKey(0))
        train_step, _ = loop.jit_steps(system, shardings, mesh)

        def advance(state, batches, steps):
            for _ in range(steps):
                state, _ = train_step(state, mesh_lib.shard_batch(next(batches), mesh))
            return state

        batches = iter(system.train_dataset())
        state = advance(state, batches, 3)
        checkpointer.save(3, state, batches)
        checkpointer.wait()
        full = host(advance(state, batches, 3))
        batches = iter(system.train_dataset())
        state = checkpointer.restore(abstract_train_state(system.init_variables, system.tx, mesh), batches)
        resumed = host(advance(state, batches, 3))
    checkpointer.close()
    single, history = run_steps(system, single_device_mesh(), 6)  # the same batches: the stream's first six
    assert [h["phase"] for h in history] == [0, 1, 2, 1, 2, 1]
    assert int(resumed.step) == 6
    assert set(resumed.params) == {"generator", "discriminator"}
    assert set(resumed.opt_state) == {"generator", "discriminator", "policy_gradient"}
    for part in ("params", "opt_state"):
        jax.tree.map(np.testing.assert_array_equal, getattr(resumed, part), getattr(full, part))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), full.params, host(single.params))


def test_sampling_and_rollouts_split_their_rows_over_the_data_shards(tmp_path):
    # The step draws its sequences and rollouts itself, from no sharded input: unconstrained, every
    # device of an 8-way mesh ran all of them, and its FLOPs equalled a one-device step's.
    system = _smoke(tmp_path, **ALL_PHASES)
    batch = next(iter(system.train_dataset()))
    eight_way = step_flops(system, mesh_lib.make_mesh((8, 1, 1)), batch)
    assert eight_way < 0.5 * step_flops(system, single_device_mesh(), batch)


def test_evaluation_scores_generated_sequences_under_the_oracle(tmp_path):
    system = _smoke(tmp_path)
    mesh = single_device_mesh()
    with loop.activate(mesh):
        state, _ = create_train_state(system.init_variables, system.tx, mesh, jax.random.PRNGKey(0))
        result = loop.evaluate_state(system, state, mesh)
    assert set(result) == {"nll", "oracle_nll", "oracle_nll_real", "d_real_accuracy", "d_fake_accuracy"}
    # an untrained generator's sequences are far less likely under the oracle than the oracle's own
    assert result["oracle_nll"] > result["oracle_nll_real"] + 0.5
    assert np.isclose(result["nll"], np.log(40), atol=0.1)  # a near-uniform generator over 40 tokens


def test_shakespeare_lines_train_a_word_level_system(tmp_path):
    overrides = {"data.source": "shakespeare", "data.seq_len": "10", "data.vocab_size": "300"}
    system = _smoke(tmp_path, **overrides)
    assert (tmp_path / "tokenizer.json").exists() and system.vocab_size == 300
    train, valid = system.splits["train"], system.splits["eval"]
    assert train.shape[1] == valid.shape[1] == 10 and len(train) > 10 * len(valid) / 2 > 1000
    lengths = np.sum(train != 0, axis=1)
    assert lengths.min() >= 4 and lengths.max() <= 10  # 4..seq_len word tokens, then padding
    assert system.decode(np.array([5, 6, 0, 0])) == system.tokenizer.decode([5, 6])
    mesh = single_device_mesh()
    with loop.activate(mesh):
        state, _ = create_train_state(system.init_variables, system.tx, mesh, jax.random.PRNGKey(0))
        a, b, c = (system.sample(state, jax.random.PRNGKey(seed), num_samples=4) for seed in (3, 3, 4))
    assert a == b and a != c and len(a) == 4
    assert all(word in system.tokenizer.words or word == "<unk>" for line in a for word in line.split())


def test_bleu_self_bleu_and_distinct_on_hand_made_cases():
    references = ["the cat sat on the mat", "a dog ran in the park"]
    assert np.isclose(metrics.bleu4(["the cat sat on the mat"], references), 1.0)
    # exactly sacrebleu's sentence BLEU ("floor" smoothing, effective order), with one or more references
    hypothesis = "the cat sat in the park today"
    for refs in (references[:1], references):
        want = sacrebleu.sentence_bleu(hypothesis, refs, smooth_method="floor", tokenize="none").score / 100
        assert np.isclose(metrics.bleu4([hypothesis], refs), want)
    # n-grams count as matched in any reference, so more references can only raise the score
    assert metrics.bleu4([hypothesis], references) > metrics.bleu4([hypothesis], references[:1])
    assert np.isclose(metrics.bleu4([hypothesis, references[1]], references), (want + 1.0) / 2)  # the mean
    # self-BLEU: a sample repeated is scored 1 against its copy; unrelated samples score near 0
    assert np.isclose(metrics.self_bleu4(["a b c d e", "a b c d e"]), 1.0)
    assert metrics.self_bleu4(["a b c d e", "f g h i j", "k l m n o"]) < 0.05
    assert 2 / 3 < metrics.self_bleu4(["a b c d e", "a b c d e", "f g h i j"]) < 2 / 3 + 0.02
    assert metrics.distinct_n(["a b a b"], 1) == 0.5
    assert metrics.distinct_n(["a b a b", "b a"], 2) == 2 / 4
