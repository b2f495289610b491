"""An encoder-decoder transformer (Vaswani et al., 2017) as a pure Linen module, built from the GPT's parts.

The encoder reads a padded source (id 0 is padding) with bidirectional self-attention whose keys are masked
at the padding; the decoder is the GPT's pre-LayerNorm causal stack with a cross-attention sub-layer in
every block, which attends to the encoder's outputs under the same source mask. LayerNorm, MLP, initial
values and causal self-attention (with its KV cache) are the ones of `models/gpt.py`; learned positions on
both sides, and the output layer is tied to the target embedding.

Padding never changes a prediction: masked keys get no attention weight, and target padding sits after
the tokens that matter, so causality already hides it.

With `decode=True` the decoder keeps a `cache` collection: causal self-attention caches keys and values as
in the GPT, and each cross-attention computes the source's keys and values once, on the call that passes
the encoder outputs (the prefill), and keeps them with the source mask. Later one-token calls pass no
source at all, so everything a decoding step needs rides in the cache, and beam search can reorder it.

Shape suffixes: B batch, S source length, T target length, D embed, H heads, K head dim, V vocabulary.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aigc_jax.models.gpt import CausalSelfAttention, Mlp, decode_position, dense_init, layer_norm, zero_init

Dtype = Any
PAD_ID = 0  # source and target padding


class MemoryAttention(nn.Module):
    """Queries attend to a memory sequence (the sequence itself in the encoder, the source in the
    decoder) whose padded positions are masked. With `decode=True` the memory's keys and values are
    computed when a memory is passed and taken from the cache when it is not."""

    num_heads: int
    num_layers: int
    dropout_rate: float
    dtype: Dtype
    decode: bool = False

    @nn.compact
    def __call__(
        self, x_BTD: jax.Array, memory_BSD: jax.Array | None, mask_BS: jax.Array | None, train: bool
    ) -> jax.Array:
        D = x_BTD.shape[-1]
        H, K = self.num_heads, D // self.num_heads
        q_kernel = self.param("q_kernel", dense_init(0.02, ("embed", "heads", "kv")), (D, H, K))
        q_bias = self.param("q_bias", zero_init(("heads", "kv")), (H, K))
        kv_kernel = self.param("kv_kernel", dense_init(0.02, ("embed", "qkv", "heads", "kv")), (D, 2, H, K))
        kv_bias = self.param("kv_bias", zero_init(("qkv", "heads", "kv")), (2, H, K))
        q_BTHK = jnp.einsum("btd,dhk->bthk", x_BTD, q_kernel.astype(self.dtype)) + q_bias.astype(self.dtype)
        if memory_BSD is not None:
            kv_BS2HK = jnp.einsum("bsd,dchk->bschk", memory_BSD, kv_kernel.astype(self.dtype))
            kv_BS2HK = kv_BS2HK + kv_bias.astype(self.dtype)
        if self.decode:
            cached_kv = self.variable("cache", "memory_kv", lambda: kv_BS2HK)
            cached_mask = self.variable("cache", "memory_mask", lambda: mask_BS)
            if memory_BSD is not None:
                cached_kv.value, cached_mask.value = kv_BS2HK, mask_BS
            kv_BS2HK, mask_BS = cached_kv.value, cached_mask.value
        y_BTHK = jax.nn.dot_product_attention(
            q_BTHK, kv_BS2HK[:, :, 0], kv_BS2HK[:, :, 1], mask=mask_BS[:, None, None, :]
        )
        proj_std = 0.02 / math.sqrt(2 * self.num_layers)
        proj_kernel = self.param("proj_kernel", dense_init(proj_std, ("heads", "kv", "embed")), (H, K, D))
        proj_bias = self.param("proj_bias", zero_init(("embed",)), (D,))
        y_BTD = jnp.einsum("bthk,hkd->btd", y_BTHK, proj_kernel.astype(self.dtype)) + proj_bias.astype(
            self.dtype
        )
        return nn.Dropout(self.dropout_rate)(y_BTD, deterministic=not train)


class EncoderBlock(nn.Module):
    num_heads: int
    num_layers: int
    dropout_rate: float
    dtype: Dtype

    @nn.compact
    def __call__(self, x_BSD: jax.Array, mask_BS: jax.Array, train: bool) -> jax.Array:
        h_BSD = layer_norm("ln_1", self.dtype)(x_BSD)
        x_BSD = x_BSD + MemoryAttention(
            self.num_heads, self.num_layers, self.dropout_rate, self.dtype, name="attn"
        )(h_BSD, h_BSD, mask_BS, train)
        x_BSD = x_BSD + Mlp(self.num_layers, self.dropout_rate, self.dtype, name="mlp")(
            layer_norm("ln_2", self.dtype)(x_BSD), train
        )
        return nn.with_logical_constraint(x_BSD, ("batch", "length", None))


class DecoderBlock(nn.Module):
    num_heads: int
    num_layers: int
    dropout_rate: float
    dtype: Dtype
    decode: bool = False

    @nn.compact
    def __call__(
        self, x_BTD: jax.Array, memory_BSD: jax.Array | None, mask_BS: jax.Array | None, train: bool
    ) -> jax.Array:
        args = (self.num_heads, self.num_layers, self.dropout_rate, self.dtype, self.decode)
        x_BTD = x_BTD + CausalSelfAttention(*args, name="attn")(layer_norm("ln_1", self.dtype)(x_BTD), train)
        x_BTD = x_BTD + MemoryAttention(*args, name="cross_attn")(
            layer_norm("ln_2", self.dtype)(x_BTD), memory_BSD, mask_BS, train
        )
        x_BTD = x_BTD + Mlp(self.num_layers, self.dropout_rate, self.dtype, name="mlp")(
            layer_norm("ln_3", self.dtype)(x_BTD), train
        )
        return nn.with_logical_constraint(x_BTD, ("batch", "length", None))


def _embed(vocab_size: int, embed_dim: int, dtype: Dtype, name: str) -> nn.Embed:
    init = dense_init(0.02, ("vocab", "embed"))
    return nn.Embed(vocab_size, embed_dim, embedding_init=init, dtype=dtype, name=name)


def _positions(module: nn.Module, max_len: int, embed_dim: int, start: Any, length: int) -> jax.Array:
    table = module.param("wpe", dense_init(0.02, ("length", "embed")), (max_len, embed_dim))
    return jax.lax.dynamic_slice_in_dim(table, start, length)


class Encoder(nn.Module):
    vocab_size: int
    num_layers: int
    num_heads: int
    embed_dim: int
    max_len: int
    dropout_rate: float
    dtype: Dtype

    @nn.compact
    def __call__(self, source_BS: jax.Array, train: bool) -> jax.Array:
        S = source_BS.shape[1]
        x_BSD = _embed(self.vocab_size, self.embed_dim, self.dtype, "wte")(source_BS)
        x_BSD = x_BSD + _positions(self, self.max_len, self.embed_dim, 0, S).astype(self.dtype)
        x_BSD = nn.Dropout(self.dropout_rate)(x_BSD, deterministic=not train)
        mask_BS = source_BS != PAD_ID
        for i in range(self.num_layers):
            x_BSD = EncoderBlock(
                self.num_heads, self.num_layers, self.dropout_rate, self.dtype, name=f"h_{i}"
            )(x_BSD, mask_BS, train)
        return layer_norm("ln_f", self.dtype)(x_BSD)


class Decoder(nn.Module):
    vocab_size: int
    num_layers: int
    num_heads: int
    embed_dim: int
    max_len: int
    dropout_rate: float
    dtype: Dtype
    decode: bool = False

    @nn.compact
    def __call__(
        self, target_BT: jax.Array, memory_BSD: jax.Array | None, mask_BS: jax.Array | None, train: bool
    ) -> jax.Array:
        T = target_BT.shape[1]
        token_embed = _embed(self.vocab_size, self.embed_dim, self.dtype, "wte")
        start = decode_position(self, T) if self.decode else 0
        x_BTD = token_embed(target_BT) + _positions(self, self.max_len, self.embed_dim, start, T).astype(
            self.dtype
        )
        x_BTD = nn.Dropout(self.dropout_rate)(x_BTD, deterministic=not train)
        for i in range(self.num_layers):
            x_BTD = DecoderBlock(
                self.num_heads, self.num_layers, self.dropout_rate, self.dtype, self.decode, name=f"h_{i}"
            )(x_BTD, memory_BSD, mask_BS, train)
        x_BTD = layer_norm("ln_f", self.dtype)(x_BTD)
        return token_embed.attend(x_BTD).astype(jnp.float32)


class Transformer(nn.Module):
    """`__call__(source, target_inputs)` gives next-token logits (float32) for every target position;
    `encode` and `decode` are its halves, for decoding one token at a time."""

    source_vocab_size: int
    target_vocab_size: int
    num_layers: int  # on each side
    num_heads: int
    embed_dim: int
    max_len: int  # longest source, and longest target including its start token
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32  # compute dtype; parameters stay float32
    decode: bool = False

    def setup(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        sizes = (self.num_layers, self.num_heads, self.embed_dim, self.max_len, self.dropout_rate, self.dtype)
        self.encoder = Encoder(self.source_vocab_size, *sizes)
        self.decoder = Decoder(self.target_vocab_size, *sizes, decode=self.decode)

    def __call__(self, source_BS: jax.Array, target_BT: jax.Array, train: bool = False) -> jax.Array:
        return self.decoder_logits(target_BT, self.encode(source_BS, train), source_BS != PAD_ID, train)

    def encode(self, source_BS: jax.Array, train: bool = False) -> jax.Array:
        return self.encoder(source_BS, train)

    def decoder_logits(
        self,
        target_BT: jax.Array,
        memory_BSD: jax.Array | None = None,
        mask_BS: jax.Array | None = None,
        train: bool = False,
    ) -> jax.Array:
        """Logits for `target_BT`; with `decode=True` the memory is passed on the first call only."""
        return self.decoder(target_BT, memory_BSD, mask_BS, train)
