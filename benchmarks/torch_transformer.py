"""The same encoder-decoder transformer in PyTorch (eager), for side-by-side step-time ratios only.

Mirrors aigc_jax.models.transformer.Transformer layer for layer: pre-LayerNorm blocks, learned positions
on both sides, key-padding-masked encoder self-attention and cross-attention (separate query and fused
key/value projections), causal decoder self-attention with a fused QKV projection, tanh-GELU MLP, and an
output layer tied to the target embedding. Padding id 0.
"""

import torch
from torch import nn


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class MemoryAttention(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(embed_dim, embed_dim)
        self.kv = nn.Linear(embed_dim, 2 * embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, mask_B11S: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        H = self.num_heads
        q = self.q(x).view(B, T, H, D // H).transpose(1, 2)
        k, v = (t.view(B, -1, H, D // H).transpose(1, 2) for t in self.kv(memory).split(D, dim=2))
        y = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask_B11S)
        return self.proj(y.transpose(1, 2).reshape(B, T, D))


class CausalSelfAttention(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = (t.view(B, T, self.num_heads, -1).transpose(1, 2) for t in self.qkv(x).split(D, dim=2))
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, D))


def mlp(embed_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(embed_dim, 4 * embed_dim), nn.GELU(approximate="tanh"), nn.Linear(4 * embed_dim, embed_dim)
    )


class EncoderBlock(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(embed_dim), nn.LayerNorm(embed_dim)
        self.attn = MemoryAttention(embed_dim, num_heads)
        self.mlp = mlp(embed_dim)

    def forward(self, x: torch.Tensor, mask_B11S: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, mask_B11S)
        return x + self.mlp(self.ln_2(x))


class DecoderBlock(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        self.ln_1, self.ln_2, self.ln_3 = (nn.LayerNorm(embed_dim) for _ in range(3))
        self.attn = CausalSelfAttention(embed_dim, num_heads)
        self.cross_attn = MemoryAttention(embed_dim, num_heads)
        self.mlp = mlp(embed_dim)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, mask_B11S: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.cross_attn(self.ln_2(x), memory, mask_B11S)
        return x + self.mlp(self.ln_3(x))


class TorchTransformer(nn.Module):
    def __init__(
        self,
        source_vocab_size: int,
        target_vocab_size: int,
        num_layers: int,
        num_heads: int,
        embed_dim: int,
        max_len: int,
    ):
        super().__init__()
        self.source_embed = nn.Embedding(source_vocab_size, embed_dim)
        self.source_positions = nn.Embedding(max_len, embed_dim)
        self.encoder = nn.ModuleList(EncoderBlock(embed_dim, num_heads) for _ in range(num_layers))
        self.encoder_ln = nn.LayerNorm(embed_dim)
        self.target_embed = nn.Embedding(target_vocab_size, embed_dim)
        self.target_positions = nn.Embedding(max_len, embed_dim)
        self.decoder = nn.ModuleList(DecoderBlock(embed_dim, num_heads) for _ in range(num_layers))
        self.decoder_ln = nn.LayerNorm(embed_dim)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mask_B11S = (source != 0)[:, None, None, :]
        x = self.source_embed(source) + self.source_positions(torch.arange(source.shape[1]))
        for block in self.encoder:
            x = block(x, mask_B11S)
        memory = self.encoder_ln(x)
        y = self.target_embed(target) + self.target_positions(torch.arange(target.shape[1]))
        for block in self.decoder:
            y = block(y, memory, mask_B11S)
        return self.decoder_ln(y) @ self.target_embed.weight.T
