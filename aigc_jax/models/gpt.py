"""GPT-2's decoder-only transformer as a pure Linen module.

Pre-LayerNorm blocks, learned positions, tied input/output embeddings, GELU MLP, dropout and causal
attention through `jax.nn.dot_product_attention`. Every parameter carries logical axis names so the same
module runs data-parallel, FSDP or tensor-parallel (see `aigc_jax/train/mesh.py`).

With `decode=True` the attention keeps a KV cache in the `cache` collection: a call with T tokens writes
their keys and values at the cache index and attends to everything before them, so one call prefills a
prompt and each later call with one token decodes the next.

Shape suffixes: B batch, T query length, L cache length, D embed, H heads, K head dim, V vocabulary.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aigc_jax.errors import UserError

Dtype = Any


def dense_init(std: float, names: tuple[str | None, ...]) -> nn.initializers.Initializer:
    return nn.with_logical_partitioning(nn.initializers.normal(std), names)


def zero_init(names: tuple[str | None, ...]) -> nn.initializers.Initializer:
    return nn.with_logical_partitioning(nn.initializers.zeros_init(), names)


def layer_norm(name: str, dtype: Dtype) -> nn.LayerNorm:
    return nn.LayerNorm(
        epsilon=1e-5,
        dtype=dtype,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("embed",)),
        bias_init=zero_init(("embed",)),
        name=name,
    )


def decode_position(module: nn.Module, T: int) -> jax.Array:
    """The absolute position of the next `T` tokens a decoding module sees, counted in its `cache`."""
    initialized = module.has_variable("cache", "position")
    position = module.variable("cache", "position", lambda: jnp.zeros((), jnp.int32))
    if not initialized:  # `init` only shapes the cache
        return jnp.zeros((), jnp.int32)
    start = position.value
    position.value = start + T
    return start


class CausalSelfAttention(nn.Module):
    num_heads: int
    num_layers: int  # GPT-2 scales the residual projection's init by 1/sqrt(2 * num_layers)
    dropout_rate: float
    dtype: Dtype
    decode: bool = False

    @nn.compact
    def __call__(self, x_BTD: jax.Array, train: bool) -> jax.Array:
        D = x_BTD.shape[-1]
        H, K = self.num_heads, D // self.num_heads
        qkv_kernel = self.param("qkv_kernel", dense_init(0.02, ("embed", "qkv", "heads", "kv")), (D, 3, H, K))
        qkv_bias = self.param("qkv_bias", zero_init(("qkv", "heads", "kv")), (3, H, K))
        qkv_BT3HK = jnp.einsum("btd,dchk->btchk", x_BTD, qkv_kernel.astype(self.dtype)) + qkv_bias.astype(
            self.dtype
        )
        q_BTHK, k_BTHK, v_BTHK = (qkv_BT3HK[:, :, i] for i in range(3))
        if self.decode:
            k_BLHK, v_BLHK, mask_TL = self._update_cache(k_BTHK, v_BTHK)
            y_BTHK = jax.nn.dot_product_attention(q_BTHK, k_BLHK, v_BLHK, mask=mask_TL[None, None])
        else:
            y_BTHK = jax.nn.dot_product_attention(q_BTHK, k_BTHK, v_BTHK, is_causal=True)
        proj_std = 0.02 / math.sqrt(2 * self.num_layers)
        proj_kernel = self.param("proj_kernel", dense_init(proj_std, ("heads", "kv", "embed")), (H, K, D))
        proj_bias = self.param("proj_bias", zero_init(("embed",)), (D,))
        y_BTD = jnp.einsum("bthk,hkd->btd", y_BTHK, proj_kernel.astype(self.dtype)) + proj_bias.astype(
            self.dtype
        )
        return nn.Dropout(self.dropout_rate)(y_BTD, deterministic=not train)

    def _update_cache(self, k_BTHK: jax.Array, v_BTHK: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        initialized = self.has_variable("cache", "key")
        key = self.variable("cache", "key", jnp.zeros, k_BTHK.shape, k_BTHK.dtype)
        value = self.variable("cache", "value", jnp.zeros, v_BTHK.shape, v_BTHK.dtype)
        index = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
        T, L = k_BTHK.shape[1], key.value.shape[1]
        if not initialized:  # `init` only shapes the cache: its length is the init input's length
            return k_BTHK, v_BTHK, jnp.tril(jnp.ones((T, T), bool))
        start = index.value
        key.value = jax.lax.dynamic_update_slice(key.value, k_BTHK.astype(key.value.dtype), (0, start, 0, 0))
        value.value = jax.lax.dynamic_update_slice(
            value.value, v_BTHK.astype(value.value.dtype), (0, start, 0, 0)
        )
        index.value = start + T
        query_position_T = start + jnp.arange(T)
        mask_TL = jnp.arange(L)[None, :] <= query_position_T[:, None]
        return key.value, value.value, mask_TL


class Mlp(nn.Module):
    num_layers: int
    dropout_rate: float
    dtype: Dtype

    @nn.compact
    def __call__(self, x_BTD: jax.Array, train: bool) -> jax.Array:
        D = x_BTD.shape[-1]
        h_BTF = nn.Dense(
            4 * D,
            dtype=self.dtype,
            kernel_init=dense_init(0.02, ("embed", "mlp")),
            bias_init=zero_init(("mlp",)),
            name="fc",
        )(x_BTD)
        h_BTF = nn.gelu(h_BTF, approximate=True)
        y_BTD = nn.Dense(
            D,
            dtype=self.dtype,
            kernel_init=dense_init(0.02 / math.sqrt(2 * self.num_layers), ("mlp", "embed")),
            bias_init=zero_init(("embed",)),
            name="proj",
        )(h_BTF)
        return nn.Dropout(self.dropout_rate)(y_BTD, deterministic=not train)


class Block(nn.Module):
    num_heads: int
    num_layers: int
    dropout_rate: float
    dtype: Dtype
    decode: bool = False

    @nn.compact
    def __call__(self, x_BTD: jax.Array, train: bool) -> jax.Array:
        x_BTD = x_BTD + CausalSelfAttention(
            self.num_heads, self.num_layers, self.dropout_rate, self.dtype, self.decode, name="attn"
        )(layer_norm("ln_1", self.dtype)(x_BTD), train)
        x_BTD = x_BTD + Mlp(self.num_layers, self.dropout_rate, self.dtype, name="mlp")(
            layer_norm("ln_2", self.dtype)(x_BTD), train
        )
        return nn.with_logical_constraint(x_BTD, ("batch", "length", None))


COMPUTE_DTYPES = ("float32", "bfloat16", "float16")  # parameters stay float32


def size_fields(model_config: Any) -> dict[str, Any]:
    """The fields every transformer here (`GPT`, `transformer.Transformer`) takes from a system's
    `config.model`: num_layers, num_heads, embed_dim, max_len, dropout (as dropout_rate) and dtype."""
    m = model_config
    if m.num_heads < 1 or m.embed_dim % m.num_heads:
        raise UserError(
            f"config.model.embed_dim {m.embed_dim} must be a multiple of config.model.num_heads {m.num_heads}"
        )
    if m.dtype not in COMPUTE_DTYPES:
        raise UserError(f"config.model.dtype {m.dtype!r} is not one of {', '.join(COMPUTE_DTYPES)}")
    return {
        "num_layers": m.num_layers,
        "num_heads": m.num_heads,
        "embed_dim": m.embed_dim,
        "max_len": m.max_len,
        "dropout_rate": m.dropout,
        "dtype": jnp.dtype(m.dtype),
    }


class GPT(nn.Module):
    vocab_size: int
    num_layers: int
    num_heads: int
    embed_dim: int
    max_len: int
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32  # compute dtype; parameters stay float32
    decode: bool = False

    @nn.compact
    def __call__(self, tokens_BT: jax.Array, train: bool = False) -> jax.Array:
        """Next-token logits (float32) for every position."""
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        T = tokens_BT.shape[1]
        token_embed = nn.Embed(
            self.vocab_size,
            self.embed_dim,
            embedding_init=dense_init(0.02, ("vocab", "embed")),
            dtype=self.dtype,
            name="wte",
        )
        position_table = self.param(
            "wpe", dense_init(0.02, ("length", "embed")), (self.max_len, self.embed_dim)
        )
        start = decode_position(self, T) if self.decode else 0
        positions_TD = jax.lax.dynamic_slice_in_dim(position_table, start, T)
        x_BTD = token_embed(tokens_BT) + positions_TD.astype(self.dtype)
        x_BTD = nn.Dropout(self.dropout_rate)(x_BTD, deterministic=not train)
        x_BTD = nn.with_logical_constraint(x_BTD, ("batch", "length", None))
        for i in range(self.num_layers):
            x_BTD = Block(
                self.num_heads, self.num_layers, self.dropout_rate, self.dtype, self.decode, name=f"h_{i}"
            )(x_BTD, train)
        x_BTD = layer_norm("ln_f", self.dtype)(x_BTD)
        return token_embed.attend(x_BTD).astype(jnp.float32)
