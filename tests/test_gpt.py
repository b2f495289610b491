"""The GPT model and the gpt_shakespeare system: shapes, causality, KV cache, learning, sampling."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax import decoding
from aigc_jax.models.gpt import GPT
from aigc_jax.systems import gpt_shakespeare
from aigc_jax.train import loop
from aigc_jax.train import mesh as mesh_lib
from aigc_jax.train.state import create_train_state, param_count
from tests.helpers import smoke_system

TINY = dict(vocab_size=61, num_layers=2, num_heads=2, embed_dim=32, max_len=24)


def _params(model, length=None):
    tokens = jnp.zeros((1, length or model.max_len), jnp.int32)
    return nn.unbox(model.init(jax.random.PRNGKey(0), tokens)["params"])


def _count(config):
    m = config.model
    model = GPT(m.vocab_size, m.num_layers, m.num_heads, m.embed_dim, m.max_len)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))
    return param_count(nn.unbox(shapes)["params"])


def test_gpt2_124m_preset_has_gpt2_parameter_count():
    assert _count(gpt_shakespeare.get_config("gpt2_124m")) == 124_439_808  # counted without allocating


def test_tiny_model_shapes_and_parameter_count():
    model = GPT(**TINY)
    params = _params(model)
    # wte 61*32 + wpe 24*32 + 2 blocks * (4 LN*32 + qkv 32*96+96 + proj 32*32+32 + fc 32*128+128
    # + proj 128*32+32) + ln_f 2*32
    assert param_count(params) == 61 * 32 + 24 * 32 + 2 * (128 + 3168 + 1056 + 4224 + 4128) + 64
    logits = model.apply({"params": params}, jnp.zeros((3, 10), jnp.int32))
    assert logits.shape == (3, 10, 61) and logits.dtype == jnp.float32


def test_future_tokens_do_not_change_earlier_logits():
    model = GPT(**TINY)
    params = _params(model)
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 20), 0, 61)
    changed = tokens.at[:, 12:].set((tokens[:, 12:] + 7) % 61)
    a = model.apply({"params": params}, tokens)
    b = model.apply({"params": params}, changed)
    np.testing.assert_allclose(a[:, :12], b[:, :12], atol=1e-6)
    assert not np.allclose(a[:, 12:], b[:, 12:])


def test_kv_cache_decoding_equals_the_full_forward_pass():
    model = GPT(**TINY)
    params = _params(model)
    tokens = jax.random.randint(jax.random.PRNGKey(2), (2, 20), 0, 61)
    full = model.apply({"params": params}, tokens)
    decoder = model.clone(decode=True)
    cache = nn.unbox(decoder.init(jax.random.PRNGKey(0), jnp.zeros((2, model.max_len), jnp.int32)))["cache"]
    prefill, variables = decoder.apply({"params": params, "cache": cache}, tokens[:, :8], mutable=["cache"])
    steps = [prefill]
    for t in range(8, 20):
        logits, variables = decoder.apply(
            {"params": params, "cache": variables["cache"]}, tokens[:, t : t + 1], mutable=["cache"]
        )
        steps.append(logits)
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, atol=2e-5)


@pytest.mark.parametrize("temperature,top_k,top_p", [(0.0, 0, 1.0), (1.0, 0, 1.0), (0.8, 5, 0.9)])
def test_cached_generation_equals_recomputing_the_context(temperature, top_k, top_p):
    model = GPT(**TINY)
    params = _params(model)
    prompt = jnp.array([[1, 2, 3], [4, 5, 6]])
    options = dict(temperature=temperature, top_k=top_k, top_p=top_p)
    cached = decoding.generate(model.clone(decode=True), params, prompt, jax.random.PRNGKey(3), 20, **options)
    recomputed = decoding.generate_without_cache(model, params, prompt, jax.random.PRNGKey(3), 20, **options)
    np.testing.assert_array_equal(cached, recomputed)


def test_generation_runs_past_the_context_window():
    model = GPT(**TINY)
    out = decoding.generate(
        model.clone(decode=True), _params(model), jnp.ones((1, 5), jnp.int32), jax.random.PRNGKey(0), 60
    )
    assert out.shape == (1, 65)


def test_top_k_and_top_p_keep_the_right_tokens():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    assert np.isfinite(decoding.filter_logits(logits, 1.0, 2, 1.0)).tolist() == [[True, True, False, False]]
    assert np.isfinite(decoding.filter_logits(logits, 1.0, 0, 0.7)).tolist() == [[True, True, False, False]]
    assert np.isfinite(decoding.filter_logits(logits, 1.0, 0, 0.4)).tolist() == [[True, False, False, False]]


def test_a_few_steps_overfit_one_batch(tmp_path):
    system = smoke_system(
        tmp_path, **{"optim.learning_rate": "1e-2", "optim.warmup_steps": "1", "optim.schedule": "constant"}
    )
    mesh = mesh_lib.make_mesh((1, 1, 1), jax.devices()[:1])
    with loop.activate(mesh):
        state, shardings = create_train_state(system.init_variables, system.tx, mesh, jax.random.PRNGKey(0))
        train_step, _ = loop.jit_steps(system, shardings, mesh)
        batch = mesh_lib.shard_batch(next(iter(system.train_dataset())), mesh)
        losses = []
        for _ in range(40):
            state, metrics = train_step(state, batch)
            losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.5 * losses[0], losses


def test_sampling_is_deterministic_for_a_seed(tmp_path):
    system = smoke_system(tmp_path)
    mesh = mesh_lib.make_mesh((1, 1, 1), jax.devices()[:1])
    with loop.activate(mesh):
        state, _ = create_train_state(system.init_variables, system.tx, mesh, jax.random.PRNGKey(0))
        a = system.sample(state, jax.random.PRNGKey(5), num_tokens=30, num_samples=2, prompt="Ham.")
        b = system.sample(state, jax.random.PRNGKey(5), num_tokens=30, num_samples=2, prompt="Ham.")
        c = system.sample(state, jax.random.PRNGKey(6), num_tokens=30, num_samples=2, prompt="Ham.")
    assert a == b and a != c
    assert all(text.startswith("Ham.") and len(text) == 34 for text in a)
