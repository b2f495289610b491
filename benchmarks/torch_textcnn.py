"""Kim's CNN in PyTorch (eager), for side-by-side step-time ratios only.

Mirrors aigc_jax.models.text_classifiers.TextCNN: padding embedded as zero vectors, wide convolutions
(width - 1 zero vectors on both sides), ReLU, windows wholly in the padding set to 0, max over time,
dropout, a linear layer; `max_norm_` is the constraint the JAX step applies after each update.
"""

import torch
from torch import nn


class TorchTextCNN(nn.Module):
    def __init__(
        self,
        num_classes: int,
        vocab_size: int,
        embed_dim: int,
        widths: tuple[int, ...],
        features: int,
        dropout: float,
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, features, w, padding=w - 1) for w in widths)
        self.widths = widths
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(features * len(widths), num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = tokens != 0
        x = (self.embed(tokens) * mask[..., None]).transpose(1, 2)  # [B, D, L]
        length = mask.sum(dim=1, keepdim=True)
        pooled = []
        for w, conv in zip(self.widths, self.convs, strict=True):
            h = torch.relu(conv(x))  # [B, F, L + w - 1]
            valid = torch.arange(h.shape[2])[None, :] < length + w - 1
            pooled.append(torch.where(valid[:, None, :], h, 0.0).amax(dim=2))
        return self.head(self.dropout(torch.cat(pooled, dim=1)))

    @torch.no_grad()
    def max_norm_(self, limit: float) -> None:
        norms = self.head.weight.norm(dim=1, keepdim=True)  # torch keeps [classes, features]
        self.head.weight.mul_(torch.clamp(limit / norms.clamp_min(1e-12), max=1.0))
