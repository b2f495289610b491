"""Autoregressive sampling for decoder modules that follow the Linen `decode=True` KV-cache pattern.

`generate` prefills the cache with the prompt in one call, then decodes one token per step inside a
`lax.fori_loop`, all under `jax.jit`. Generations longer than the model's context continue by re-filling
the cache with the most recent half-context (learned absolute positions cannot slide). Token choice uses
a key folded from the absolute position, so the same seed gives the same text with or without the cache.

`greedy_search` and `beam_search` decode from any one-token step function over a prefilled cache (an
encoder-decoder's decoder, with the encoder outputs riding in the cache), inside the caller's `jax.jit`.
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

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


# --- search over a one-token step function (encoder-decoders, beam search) ------------------------

StepFn = Callable[[jax.Array, Any], tuple[jax.Array, Any]]  # (tokens_N1, cache) -> (logits_NV, cache)


def length_penalty(length: jax.Array, alpha: float) -> jax.Array:
    """GNMT's length normalisation (Wu et al., 2016): a hypothesis's log-probability is divided by this,
    so longer outputs are not lost merely for having more tokens to pay for."""
    return ((5.0 + length) / 6.0) ** alpha


def greedy_search(
    step_fn: StepFn, cache: Any, first_logits_BV: jax.Array, *, max_new: int, eos_id: int
) -> jax.Array:
    """The most likely token at every step: tokens_BN int32, padded with `eos_id` after a row's EOS.

    `step_fn(tokens_B1, cache) -> (logits_BV, cache)` decodes one token from the KV cache; `first_logits_BV`
    come from the caller's prefill. Pure `lax` (stops once every row has ended), so it runs inside `jax.jit`.
    """
    B = first_logits_BV.shape[0]

    def pick(i: jax.Array, tokens_BN: jax.Array, done_B: jax.Array, logits_BV: jax.Array) -> tuple:
        token_B = jnp.where(done_B, eos_id, jnp.argmax(logits_BV, axis=-1).astype(jnp.int32))
        return tokens_BN.at[:, i].set(token_B), done_B | (token_B == eos_id)

    empty_BN = jnp.full((B, max_new), eos_id, jnp.int32)
    tokens_BN, done_B = pick(jnp.int32(0), empty_BN, jnp.zeros(B, bool), first_logits_BV)

    def unfinished(carry: tuple) -> jax.Array:
        i, _, done_B, _ = carry
        return (i < max_new) & ~jnp.all(done_B)

    def body(carry: tuple) -> tuple:
        i, tokens_BN, done_B, cache = carry
        logits_BV, cache = step_fn(jax.lax.dynamic_slice_in_dim(tokens_BN, i - 1, 1, axis=1), cache)
        tokens_BN, done_B = pick(i, tokens_BN, done_B, logits_BV)
        return i + 1, tokens_BN, done_B, cache

    _, tokens_BN, _, _ = jax.lax.while_loop(unfinished, body, (jnp.int32(1), tokens_BN, done_B, cache))
    return tokens_BN


class _Beams(NamedTuple):
    """K hypotheses per row: every field is [B, K] except tokens [B, K, N] and the cache [B * K, ...]."""

    tokens: jax.Array  # int32, EOS-filled beyond each hypothesis's end
    log_prob: jax.Array  # summed token log-probabilities
    length: jax.Array  # tokens up to and including EOS (frozen once finished)
    done: jax.Array  # has produced EOS
    score: jax.Array  # log_prob / length_penalty(length): what the beams are ranked by
    cache: Any  # ordered like the beams


def beam_search(
    step_fn: StepFn,
    cache: Any,
    first_logits_BV: jax.Array,
    *,
    beam_size: int,
    max_new: int,
    eos_id: int,
    length_alpha: float = 0.6,
) -> tuple[jax.Array, jax.Array]:
    """The `beam_size` best continuations by GNMT score: tokens_BKN int32 (EOS-padded) and scores_BK,
    best beam first.

    `cache` is the caller's prefilled cache for batch B: array leaves with a batch axis 0 are repeated for
    the beams and reordered with them (encoder outputs and source masks ride along this way); scalar leaves
    such as a cache index are shared. `step_fn` sees N = B * beam_size rows. A finished hypothesis keeps its
    slot with a frozen score (its only continuation is EOS at no cost) and competes with the live ones, so a
    beam of 1 is exactly greedy search. Pure `lax`; stops once every beam has ended.
    """
    B, V = first_logits_BV.shape
    K = beam_size
    is_eos_V = jnp.arange(V) == eos_id

    def advance(i: jax.Array, beams: _Beams, logits_NV: jax.Array) -> _Beams:
        log_p_BKV = jax.nn.log_softmax(logits_NV.astype(jnp.float32), axis=-1).reshape(B, K, V)
        log_p_BKV = jnp.where(beams.done[..., None], jnp.where(is_eos_V, 0.0, -jnp.inf), log_p_BKV)
        total_BKV = beams.log_prob[..., None] + log_p_BKV
        length_BK = jnp.where(beams.done, beams.length, i + 1)
        score_BKV = total_BKV / length_penalty(length_BK, length_alpha)[..., None]
        score_BK, choice_BK = jax.lax.top_k(score_BKV.reshape(B, K * V), K)
        beam_BK, token_BK = choice_BK // V, (choice_BK % V).astype(jnp.int32)

        def from_beam(x_BK: jax.Array) -> jax.Array:
            return jnp.take_along_axis(x_BK, beam_BK, axis=1)

        row_N = (jnp.arange(B)[:, None] * K + beam_BK).reshape(-1)
        tokens_BKN = jnp.take_along_axis(beams.tokens, beam_BK[..., None], axis=1)
        return _Beams(
            tokens=tokens_BKN.at[:, :, i].set(token_BK),
            log_prob=jnp.take_along_axis(total_BKV.reshape(B, K * V), choice_BK, axis=1),
            length=from_beam(length_BK),
            done=from_beam(beams.done) | (token_BK == eos_id),
            score=score_BK,
            cache=jax.tree.map(lambda x: x[row_N] if x.ndim else x, beams.cache),
        )

    start = _Beams(
        tokens=jnp.full((B, K, max_new), eos_id, jnp.int32),
        # only beam 0 is live at first, so the first step picks K distinct tokens rather than K copies
        log_prob=jnp.full((B, K), -jnp.inf).at[:, 0].set(0.0),
        length=jnp.zeros((B, K), jnp.int32),
        done=jnp.zeros((B, K), bool),
        score=jnp.zeros((B, K)),
        cache=jax.tree.map(lambda x: jnp.repeat(x, K, axis=0) if x.ndim else x, cache),
    )
    first_logits_NV = jnp.repeat(first_logits_BV, K, axis=0)
    beams = advance(jnp.int32(0), start, first_logits_NV)

    def unfinished(carry: tuple[jax.Array, _Beams]) -> jax.Array:
        i, beams = carry
        return (i < max_new) & ~jnp.all(beams.done)

    def body(carry: tuple[jax.Array, _Beams]) -> tuple[jax.Array, _Beams]:
        i, beams = carry
        last_N1 = beams.tokens[:, :, i - 1].reshape(B * K, 1)
        logits_NV, cache = step_fn(last_N1, beams.cache)
        return i + 1, advance(i, beams._replace(cache=cache), logits_NV)

    _, beams = jax.lax.while_loop(unfinished, body, (jnp.int32(1), beams))
    return beams.tokens, beams.score


def prefill(model: nn.Module, params: Any, prompt_BP: jax.Array) -> tuple[jax.Array, Any]:
    """Runs a decoder-only `decode=True` model over `prompt_BP` from an empty cache of `model.max_len`:
    the logits for the first new token `[B, V]` and the filled cache, ready for `beam_search`."""
    cache = _empty_cache(model, prompt_BP.shape[0], model.max_len)
    logits_BPV, updated = model.apply({"params": params, "cache": cache}, prompt_BP, mutable=["cache"])
    return logits_BPV[:, -1], updated["cache"]


def cached_step_fn(model: nn.Module, params: Any) -> StepFn:
    """The one-token step of a decoder-only `decode=True` model over its KV cache, for `beam_search`."""

    def step(tokens_N1: jax.Array, cache: Any) -> tuple[jax.Array, Any]:
        logits_N1V, updated = model.apply({"params": params, "cache": cache}, tokens_N1, mutable=["cache"])
        return logits_N1V[:, -1], updated["cache"]

    return step
