"""Autoregressive sampling for decoder modules that follow the Linen `decode=True` KV-cache pattern.

`generate` prefills the cache with the prompt in one call, then decodes one token per step inside a
`lax.fori_loop`, all under `jax.jit`. Generations longer than the model's context continue by re-filling
the cache with the most recent half-context (learned absolute positions cannot slide). Token choice uses
a key folded from the absolute position, so the same seed gives the same text with or without the cache.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def filter_logits(logits_BV: jax.Array, temperature: float, top_k: int, top_p: float) -> jax.Array:
    """Temperature, then top-k, then nucleus (top-p) filtering; removed entries become -inf."""
    logits_BV = logits_BV / jnp.maximum(temperature, 1e-6)
    if top_k > 0:
        kth_B1 = jax.lax.top_k(logits_BV, top_k)[0][:, -1:]
        logits_BV = jnp.where(logits_BV < kth_B1, -jnp.inf, logits_BV)
    if top_p < 1.0:
        sorted_BV = jnp.sort(logits_BV, axis=-1)[:, ::-1]
        cumulative_BV = jnp.cumsum(jax.nn.softmax(sorted_BV, axis=-1), axis=-1)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        cutoff_index_B1 = jnp.sum(cumulative_BV < top_p, axis=-1, keepdims=True)
        cutoff_B1 = jnp.take_along_axis(sorted_BV, cutoff_index_B1, axis=-1)
        logits_BV = jnp.where(logits_BV < cutoff_B1, -jnp.inf, logits_BV)
    return logits_BV


def choose_token(
    logits_BV: jax.Array, rng: jax.Array, position: jax.Array, temperature: float, top_k: int, top_p: float
) -> jax.Array:
    """Greedy at temperature 0, otherwise a filtered categorical draw keyed by the absolute position."""
    if temperature == 0.0:
        return jnp.argmax(logits_BV, axis=-1).astype(jnp.int32)
    key = jax.random.fold_in(rng, position)
    return jax.random.categorical(key, filter_logits(logits_BV, temperature, top_k, top_p)).astype(jnp.int32)


def _empty_cache(model: nn.Module, batch_size: int, length: int) -> Any:
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((batch_size, length), jnp.int32))["cache"]
    )
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


@functools.partial(jax.jit, static_argnames=("model", "num_new", "temperature", "top_k", "top_p"))
def _generate_window(
    model: nn.Module,
    params: Any,
    context_BP: jax.Array,
    rng: jax.Array,
    offset: jax.Array,
    num_new: int,
    temperature: float,
    top_k: int,
    top_p: float,
) -> jax.Array:
    """Prefill `context_BP`, then decode `num_new` tokens; `offset` = absolute index of context[0]."""
    B, P = context_BP.shape
    cache = _empty_cache(model, B, model.max_len)
    logits_BPV, updated = model.apply({"params": params, "cache": cache}, context_BP, mutable=["cache"])
    first_B = choose_token(logits_BPV[:, -1], rng, offset + P, temperature, top_k, top_p)
    out_BN = jnp.zeros((B, num_new), jnp.int32).at[:, 0].set(first_B)

    def body(i: int, carry: tuple[Any, jax.Array]) -> tuple[Any, jax.Array]:
        cache, out_BN = carry
        token_B1 = jax.lax.dynamic_slice_in_dim(out_BN, i - 1, 1, axis=1)
        logits_B1V, updated = model.apply({"params": params, "cache": cache}, token_B1, mutable=["cache"])
        next_B = choose_token(logits_B1V[:, -1], rng, offset + P + i, temperature, top_k, top_p)
        return updated["cache"], out_BN.at[:, i].set(next_B)

    _, out_BN = jax.lax.fori_loop(1, num_new, body, (updated["cache"], out_BN))
    return out_BN


def generate(
    model: nn.Module,
    params: Any,
    prompt_BP: jax.Array,
    rng: jax.Array,
    num_new: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> jax.Array:
    """Returns `[B, P + num_new]` tokens: the prompt followed by the sampled continuation.

    `model` must be a decoder with `decode=True` and a `max_len` attribute (its cache length).
    """
    L = model.max_len
    tokens_BS = jnp.asarray(prompt_BP, jnp.int32)
    if tokens_BS.shape[1] > L:
        tokens_BS = tokens_BS[:, -L:]
    sample = functools.partial(
        _generate_window, model, params, temperature=temperature, top_k=top_k, top_p=top_p
    )
    produced, start = 0, 0  # `start` = absolute index of tokens_BS[:, 0] in the generated stream
    while produced < num_new:
        context_BP = tokens_BS[:, start:]
        if context_BP.shape[1] >= L:  # cache full: restart it from the recent half-context
            start = tokens_BS.shape[1] - L // 2
            context_BP = tokens_BS[:, start:]
        steps = min(num_new - produced, L - context_BP.shape[1])
        new_BN = sample(context_BP, rng, jnp.int32(tokens_BS.shape[1] - context_BP.shape[1]), steps)
        tokens_BS = jnp.concatenate([tokens_BS, new_BN], axis=1)
        produced += steps
    return tokens_BS


@functools.partial(jax.jit, static_argnames=("model", "num_new", "temperature", "top_k", "top_p"))
def generate_without_cache(
    model: nn.Module,
    params: Any,
    prompt_BP: jax.Array,
    rng: jax.Array,
    num_new: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> jax.Array:
    """The baseline the cache is measured against: every step recomputes the whole context.

    `model` has `decode=False`; the prompt plus `num_new` must fit in `model.max_len`.
    """
    B, P = prompt_BP.shape
    L = model.max_len
    if P + num_new > L:
        raise ValueError(f"prompt {P} + new {num_new} tokens exceed the context {L}")
    buffer_BL = jnp.zeros((B, L), jnp.int32).at[:, :P].set(prompt_BP)

    def body(position: int, buffer_BL: jax.Array) -> jax.Array:
        logits_BLV = model.apply({"params": params}, buffer_BL)  # causal: later slots cannot leak
        logits_BV = jax.lax.dynamic_index_in_dim(logits_BLV, position - 1, axis=1, keepdims=False)
        next_B = choose_token(logits_BV, rng, position, temperature, top_k, top_p)
        return buffer_BL.at[:, position].set(next_B)

    buffer_BL = jax.lax.fori_loop(P, P + num_new, body, buffer_BL)
    return buffer_BL[:, : P + num_new]
