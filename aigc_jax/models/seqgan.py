"""SeqGAN's networks (Yu et al., AAAI 2017) as pure Linen modules, and the sequence functions on them.

- `LstmGenerator` is *one step* of an LSTM language model: previous token → embedding → LSTM cell →
  next-token logits. Every sequence-level function below (teacher forcing, sampling, Monte-Carlo
  rollouts) is a `lax.scan` over this step, so all of them run under `jax.jit`. With its weights drawn
  from N(0, 1) the same module is the synthetic benchmark's *oracle* (the paper's code draws the oracle
  from N(0, 1) and the generator from N(0, 0.1²)).
- `CnnDiscriminator` is the paper's text CNN: embedding, convolutions of several widths with ReLU and
  max-over-time pooling, a highway layer, dropout, and one logit for "real".

Sequences have a fixed length T; every one is generated after a start token, `START` (id 0).

Shape suffixes: B batch, T sequence length, V vocabulary, E embedding, H hidden, F features,
P prefixes (T - 1), M rollouts, N rows of any flattened batch.
"""

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

START = 0
Carry = tuple[jax.Array, jax.Array]  # the LSTM's (cell, hidden) state, each [N, H]


class LstmGenerator(nn.Module):
    """One step: `(carry, tokens_N) -> (carry, next-token logits_NV)`."""

    vocab_size: int
    embed_dim: int
    hidden_dim: int
    init_std: float = 0.1  # every weight and bias ~ N(0, init_std²), as in the paper's code

    @nn.compact
    def __call__(self, carry: Carry, tokens_N: jax.Array) -> tuple[Carry, jax.Array]:
        init = nn.initializers.normal(self.init_std)
        x_NE = nn.Embed(self.vocab_size, self.embed_dim, embedding_init=init, name="embed")(tokens_N)
        cell = nn.LSTMCell(
            self.hidden_dim, kernel_init=init, recurrent_kernel_init=init, bias_init=init, name="lstm"
        )
        carry, h_NH = cell(carry, x_NE)
        logits_NV = nn.Dense(self.vocab_size, kernel_init=init, bias_init=init, name="out")(h_NH)
        return carry, logits_NV


def zero_carry(batch_size: int, hidden_dim: int) -> Carry:
    return jnp.zeros((batch_size, hidden_dim)), jnp.zeros((batch_size, hidden_dim))


def _split_rows(tree: Any, axis: int = 0) -> Any:
    """Constrains axis `axis` (rows) of every array to the mesh's batch axes. Sampling and rollouts draw
    their sequences inside the step, from no sharded input that XLA could follow: unconstrained, every
    device of a data-parallel mesh ran all the rows."""

    def split(x: jax.Array) -> jax.Array:
        names = [None] * x.ndim
        names[axis] = "batch"
        return nn.with_logical_constraint(x, tuple(names))

    return jax.tree.map(split, tree)


def init_generator(model: LstmGenerator, rng: jax.Array) -> dict[str, Any]:
    return model.init(rng, zero_carry(1, model.hidden_dim), jnp.zeros((1,), jnp.int32))


def _shifted_inputs(tokens_BT: jax.Array) -> jax.Array:
    """What the generator reads at each position: START, then the sequence shifted right by one."""
    start_B1 = jnp.full((tokens_BT.shape[0], 1), START, tokens_BT.dtype)
    return jnp.concatenate([start_B1, tokens_BT[:, :-1]], axis=1).T


def teacher_forced(model: LstmGenerator, params: Any, tokens_BT: jax.Array) -> tuple[Carry, jax.Array]:
    """Logits for every token given the ones before it, `[B, T, V]`, and the carries *before* each
    input, `([T, B, H], [T, B, H])` (what a rollout from each prefix starts from)."""

    def body(carry: Carry, tokens_B: jax.Array) -> tuple[Carry, tuple[Carry, jax.Array]]:
        new_carry, logits_BV = model.apply({"params": params}, carry, tokens_B)
        return new_carry, (carry, logits_BV)

    B = tokens_BT.shape[0]
    _, (carries_TB, logits_TBV) = jax.lax.scan(
        body, zero_carry(B, model.hidden_dim), _shifted_inputs(tokens_BT)
    )
    return carries_TB, logits_TBV.transpose(1, 0, 2)


def token_nll(model: LstmGenerator, params: Any, tokens_BT: jax.Array) -> jax.Array:
    """−log G(y_t | y_<t) of every token, `[B, T]`."""
    _, logits_BTV = teacher_forced(model, params, tokens_BT)
    return optax.softmax_cross_entropy_with_integer_labels(logits_BTV, tokens_BT)


def policy_gradient_loss(
    model: LstmGenerator, params: Any, tokens_BT: jax.Array, rewards_BT: jax.Array
) -> jax.Array:
    """REINFORCE: −mean Q(y_≤t) log G(y_t | y_<t); its gradient raises the probability of rewarded
    tokens in proportion to their reward. Rewards are constants (no gradient flows into them)."""
    return jnp.mean(token_nll(model, params, tokens_BT) * jax.lax.stop_gradient(rewards_BT))


def uniforms(keys_N: jax.Array, steps: int) -> jax.Array:
    """`[steps, N]` uniform numbers, column n from `keys_N[n]` alone: a row's draws depend neither on
    the other rows nor on how the batch is sharded. Drawn before a scan, so its body holds no
    random-number generator (which would double its compile time)."""
    return jax.vmap(lambda key: jax.random.uniform(key, (steps,)))(keys_N).T


def draw(logits_NV: jax.Array, u_N: jax.Array) -> jax.Array:
    """One token per row from softmax(logits), by inverting the CDF at the row's uniform number `u_N`.

    Rollouts draw ~10⁵ tokens per step from 5,000 words, so the draw is made cheap for a CPU: one random
    number per row instead of `jax.random.categorical`'s Gumbel noise over the whole vocabulary, and the
    CDF in two levels — over blocks of ~√V words, then within the chosen block — since one cumulative
    sum over all V words costs ~9× the softmax (measured).
    """
    N, V = logits_NV.shape
    block = math.isqrt(V - 1) + 1
    num_blocks = -(-V // block)
    p_NV = jnp.exp(logits_NV - jnp.max(logits_NV, axis=-1, keepdims=True))
    p_NKb = jnp.pad(p_NV, ((0, 0), (0, num_blocks * block - V))).reshape(N, num_blocks, block)
    cdf_NK = jnp.cumsum(jnp.sum(p_NKb, axis=-1), axis=-1)
    target_N = u_N * cdf_NK[:, -1]
    k_N = jnp.minimum(jnp.sum(cdf_NK < target_N[:, None], axis=-1), num_blocks - 1)
    before_N = jnp.where(k_N > 0, jnp.take_along_axis(cdf_NK, jnp.maximum(k_N - 1, 0)[:, None], 1)[:, 0], 0.0)
    within_Nb = jnp.take_along_axis(p_NKb, k_N[:, None, None], axis=1)[:, 0]
    cdf_Nb = before_N[:, None] + jnp.cumsum(within_Nb, axis=-1)
    j_N = jnp.minimum(jnp.sum(cdf_Nb < target_N[:, None], axis=-1), block - 1)
    return jnp.minimum(k_N * block + j_N, V - 1).astype(jnp.int32)


def sample(model: LstmGenerator, params: Any, keys_B: jax.Array, length: int) -> jax.Array:
    """`[B, length]` sequences drawn from the generator, row b from `keys_B[b]`."""

    def body(state: tuple[Carry, jax.Array], u_B: jax.Array) -> tuple[tuple[Carry, jax.Array], jax.Array]:
        carry, tokens_B = state
        carry, logits_BV = model.apply({"params": params}, carry, tokens_B)
        tokens_B = draw(logits_BV, u_B)
        return (carry, tokens_B), tokens_B

    B = keys_B.shape[0]
    start = _split_rows((zero_carry(B, model.hidden_dim), jnp.full((B,), START, jnp.int32)))
    _, tokens_TB = jax.lax.scan(body, start, _split_rows(uniforms(keys_B, length), axis=1))
    return tokens_TB.T


def rollouts(
    model: LstmGenerator, params: Any, tokens_BT: jax.Array, num_rollouts: int, rng: jax.Array
) -> jax.Array:
    """Monte-Carlo completions of every proper prefix: `[P, M, B, T]`, where `[t - 1, m]` keeps the first
    t tokens of `tokens_BT` and draws the rest from the generator (the roll-out policy).

    A rollout from prefix t takes T − t steps, so the prefixes are paired, t with T − t (1 with T − 1,
    2 with T − 2, ...): each pair's rollouts run T steps in one lane, first completing prefix t, then,
    restarted from the LSTM state of the other prefix (from one teacher-forced pass), completing it.
    That is half the work of running every prefix's rollouts for T − 1 steps. In a lane all M·B
    rollouts advance together (one `lax.scan` of T steps); the lanes run one after the other
    (`lax.map`), so the largest intermediate is one lane's logits, M·B × V, not all lanes'. With an odd
    number of prefixes the middle one pairs with itself and its second completion is discarded.
    """
    B, T = tokens_BT.shape
    P, M = T - 1, num_rollouts
    L = (P + 1) // 2  # lanes
    R = M * B  # rows of a lane, ordered (m, b)
    carries_TB, _ = teacher_forced(model, params, tokens_BT)
    u_LTR = uniforms(jax.random.split(rng, L * R), T).reshape(T, L, R).transpose(1, 0, 2)
    u_LTR = _split_rows(u_LTR, axis=2)  # each device rolls out its own block of rows

    def per_row(x_B: jax.Array) -> jax.Array:  # [B, ...] -> [R, ...]
        return jnp.broadcast_to(x_B[None], (M, *x_B.shape)).reshape(R, *x_B.shape[1:])

    def prefix_start(prefix: jax.Array) -> tuple[Carry, jax.Array]:
        """The LSTM state before reading the prefix's last token, and that token, per row."""
        return tuple(per_row(c_TBH[prefix]) for c_TBH in carries_TB), per_row(tokens_BT[:, prefix - 1])

    whole_RT = per_row(tokens_BT)

    def lane(xs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        first, u_TR = xs  # the prefix completed first; the other is P + 1 - first
        second = P + 1 - first
        switch = T - first  # the step at which the lane moves on to its second prefix
        second_carry, second_last_R = _split_rows(prefix_start(second))

        def body(state: tuple[Carry, jax.Array, jax.Array, jax.Array], xs: tuple) -> tuple[Any, None]:
            carry, tokens_R, first_RT, second_RT = state
            step, u_R = xs
            restart = step == switch
            carry = tuple(jnp.where(restart, s, c) for s, c in zip(second_carry, carry, strict=True))
            tokens_R = jnp.where(restart, second_last_R, tokens_R)
            carry, logits_RV = model.apply({"params": params}, carry, tokens_R)
            tokens_R = draw(logits_RV, u_R)
            in_second = step >= switch
            here_T = jnp.arange(T) == jnp.where(in_second, second + step - switch, first + step)
            first_RT = jnp.where(here_T & ~in_second, tokens_R[:, None], first_RT)
            second_RT = jnp.where(here_T & in_second, tokens_R[:, None], second_RT)
            return (carry, tokens_R, first_RT, second_RT), None

        start = _split_rows((*prefix_start(first), whole_RT, whole_RT))
        (_, _, first_RT, second_RT), _ = jax.lax.scan(body, start, (jnp.arange(T), u_TR))
        return first_RT, second_RT

    first_LRT, second_LRT = jax.lax.map(lane, (jnp.arange(1, L + 1), u_LTR))
    first_LMBT, second_LMBT = first_LRT.reshape(L, M, B, T), second_LRT.reshape(L, M, B, T)
    # prefixes 1..L from the first legs; L+1..P from the second legs, whose lanes hold them in reverse
    return jnp.concatenate([first_LMBT, second_LMBT[: P - L][::-1]], axis=0)


def rollout_rewards(
    model: LstmGenerator,
    params: Any,
    tokens_BT: jax.Array,
    num_rollouts: int,
    rng: jax.Array,
    probability_real: Callable[[jax.Array], jax.Array],
) -> jax.Array:
    """SeqGAN's action values `[B, T]`: for t < T the mean of `probability_real` over `num_rollouts`
    completions of the prefix y_≤t, and for the whole sequence its own `probability_real`."""
    B, T = tokens_BT.shape
    M = num_rollouts
    completed_PMBT = rollouts(model, params, tokens_BT, num_rollouts, rng)
    # one prefix at a time (`lax.map`): all P·M·B sequences at once would hold ~0.5 GB of activations
    prefix_PB = jax.lax.map(
        lambda x_MBT: probability_real(x_MBT.reshape(M * B, T)).reshape(M, B).mean(axis=0), completed_PMBT
    )
    whole_1B = probability_real(tokens_BT)[None]
    return jnp.concatenate([prefix_PB, whole_1B], axis=0).T


def _uniform_symmetric(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -1.0, 1.0)


class Highway(nn.Module):
    """y = t·relu(W_h x) + (1 − t)·x with the gate t = σ(W_t x − 2): starts close to the identity."""

    @nn.compact
    def __call__(self, x_BF: jax.Array) -> jax.Array:
        F = x_BF.shape[-1]
        gate_BF = nn.sigmoid(nn.Dense(F, bias_init=nn.initializers.constant(-2.0), name="gate")(x_BF))
        h_BF = nn.relu(nn.Dense(F, name="transform")(x_BF))
        return gate_BF * h_BF + (1.0 - gate_BF) * x_BF


class CnnDiscriminator(nn.Module):
    """`tokens [B, T] -> logit [B]` that the sequence is real (Kim's text CNN with a highway layer)."""

    vocab_size: int
    embed_dim: int
    filter_sizes: Sequence[int]
    num_filters: Sequence[int]
    dropout_rate: float

    @nn.compact
    def __call__(self, tokens_BT: jax.Array, train: bool = False) -> jax.Array:
        if max(self.filter_sizes) > tokens_BT.shape[1]:
            raise ValueError(
                f"filter width {max(self.filter_sizes)} exceeds the sequence length {tokens_BT.shape[1]}"
            )
        # the paper's code: embeddings ~ U(-1, 1), conv kernels ~ truncated N(0, 0.1²), conv biases 0.1
        x_BTE = nn.Embed(self.vocab_size, self.embed_dim, embedding_init=_uniform_symmetric, name="embed")(
            tokens_BT
        )
        pooled = []
        for width, features in zip(self.filter_sizes, self.num_filters, strict=True):
            h_BSF = nn.Conv(
                features,
                (width,),
                padding="VALID",
                kernel_init=nn.initializers.truncated_normal(0.1),
                bias_init=nn.initializers.constant(0.1),
                name=f"conv_{width}",
            )(x_BTE)
            pooled.append(jnp.max(nn.relu(h_BSF), axis=1))  # max over time
        h_BF = Highway(name="highway")(jnp.concatenate(pooled, axis=-1))
        h_BF = nn.Dropout(self.dropout_rate)(h_BF, deterministic=not train)
        return nn.Dense(1, name="logit")(h_BF)[:, 0]
