"""Sentence classifiers over word ids `[B, L]`, right-padded with 0: padding never changes an output.

- `FastText`: the source's classifier (questions 10 and 23), `Embedding(vocab, 128)` -> mean over the
  sentence's tokens -> `Dense(classes)`, with fastText's hashed bigrams (Joulin et al. 2016) as an option:
  each pair of neighbouring words adds one more embedding, from a table of `bigram_buckets` rows, to
  the bag.
- `NbLinear`: the model of NBSVM (Wang & Manning 2012): which unigrams and bigrams occur (binary), each
  scaled by its naive-Bayes log-count ratio, fed to a linear layer. The ratios are fixed statistics of
  the training sentences, held in the collection `nb`, not parameters.
- `TextCNN`: Kim (2014), filters of widths 3/4/5 over word embeddings, ReLU, max over time, dropout,
  one dense layer.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

PAD_ID = 0  # text.PAD_ID; models import nothing from data/
_BIGRAM_HASH = 116_049_371  # fastText's hash multiplier: any large odd number spreads the pairs


def ngram_ids(tokens_BL: jax.Array, vocab_size: int, bigram_buckets: int) -> tuple[jax.Array, jax.Array]:
    """(ids `[B, N]`, mask `[B, N]` of real n-grams): the unigrams, then with `bigram_buckets` > 0 each
    neighbouring pair hashed to `vocab_size + (a * K + b) mod bigram_buckets` (N = 2L - 1)."""
    mask_BL = tokens_BL != PAD_ID
    if not bigram_buckets:
        return tokens_BL, mask_BL
    a, b = tokens_BL[:, :-1].astype(jnp.uint32), tokens_BL[:, 1:].astype(jnp.uint32)
    hashed = (a * jnp.uint32(_BIGRAM_HASH) + b) % jnp.uint32(bigram_buckets)  # wraps mod 2**32: still a hash
    ids_BN = jnp.concatenate([tokens_BL, vocab_size + hashed.astype(jnp.int32)], axis=1)
    mask_BN = jnp.concatenate([mask_BL, mask_BL[:, :-1] & mask_BL[:, 1:]], axis=1)
    return ids_BN, mask_BN


def first_occurrences(ids_BN: jax.Array, mask_BN: jax.Array) -> jax.Array:
    """`[B, N]` True at the first real occurrence of each id in its row: binary (set-of-n-grams) features."""
    N = ids_BN.shape[1]
    earlier_NN = jnp.arange(N)[None, :] < jnp.arange(N)[:, None]  # [n, m]: m comes before n
    repeat_BNN = (ids_BN[:, :, None] == ids_BN[:, None, :]) & mask_BN[:, None, :] & earlier_NN
    return mask_BN & ~repeat_BNN.any(axis=-1)


class FastText(nn.Module):
    """Mean of the word (and hashed-bigram) embeddings of a sentence, then a linear classifier."""

    num_classes: int
    vocab_size: int
    embed_dim: int = 128
    bigram_buckets: int = 0  # 0: words only

    @nn.compact
    def __call__(self, tokens_BL: jax.Array, train: bool = False) -> jax.Array:
        del train  # no dropout or batch statistics
        ids_BN, mask_BN = ngram_ids(tokens_BL, self.vocab_size, self.bigram_buckets)
        e_BND = nn.Embed(self.vocab_size + self.bigram_buckets, self.embed_dim, name="embed")(ids_BN)
        w_BN = mask_BN.astype(e_BND.dtype)
        mean_BD = (e_BND * w_BN[..., None]).sum(axis=1) / jnp.maximum(w_BN.sum(axis=1, keepdims=True), 1.0)
        return nn.Dense(self.num_classes, name="head")(mean_BD)


class NbLinear(nn.Module):
    """Binary unigram (+ hashed bigram) indicators times their NB log-count ratios, then a linear layer.

    Trained with softmax cross-entropy this is NBSVM's features with logistic regression in place of the
    SVM (the "NBLR" of later work). The ratios live in `nb/log_count_ratio` `[features]`, set by the system.
    """

    num_classes: int
    vocab_size: int
    bigram_buckets: int = 0

    @nn.compact
    def __call__(self, tokens_BL: jax.Array, train: bool = False) -> jax.Array:
        del train
        num_features = self.vocab_size + self.bigram_buckets
        ratio_F = self.variable("nb", "log_count_ratio", jnp.zeros, (num_features,)).value
        weight_FC = self.param("weight", nn.initializers.zeros, (num_features, self.num_classes))
        bias_C = self.param("bias", nn.initializers.zeros, (self.num_classes,))
        ids_BN, mask_BN = ngram_ids(tokens_BL, self.vocab_size, self.bigram_buckets)
        x_BN = first_occurrences(ids_BN, mask_BN) * ratio_F[ids_BN]
        return jnp.einsum("bn,bnc->bc", x_BN, weight_FC[ids_BN]) + bias_C


def wide_windows(x_BLD: jax.Array, width: int) -> jax.Array:
    """`[B, L + width - 1, width * D]`: window t concatenates positions t - width + 1 .. t of `x` padded by
    width - 1 zero vectors on both sides, so a dense layer over it is a "wide" 1-D convolution.

    XLA's CPU convolutions run this ~7x slower than the one matrix product (measured for Kim's shapes),
    and the parameters are the same: a `[width * D, features]` kernel and a bias.
    """
    T = x_BLD.shape[1] + width - 1
    padded = jnp.pad(x_BLD, ((0, 0), (width - 1, width - 1), (0, 0)))
    return jnp.concatenate([padded[:, i : i + T] for i in range(width)], axis=-1)


class TextCNN(nn.Module):
    """Kim (2014): convolutions of several widths over the embedded sentence, ReLU, max over time.

    Each convolution is "wide" (`wide_windows`: the sentence is padded by width - 1 zero vectors on both
    sides, as in Kim's code), and windows lying wholly in the right padding are set to 0 after the ReLU,
    which cannot change the max, so the output is the same however much padding follows the sentence.
    """

    num_classes: int
    vocab_size: int
    embed_dim: int = 300
    widths: tuple[int, ...] = (3, 4, 5)
    features: int = 100
    dropout_rate: float = 0.5

    @nn.compact
    def __call__(self, tokens_BL: jax.Array, train: bool = False) -> jax.Array:
        mask_BL = tokens_BL != PAD_ID
        # padding reads as zero vectors, whatever the (trained) embedding row 0 holds
        x_BLD = nn.Embed(self.vocab_size, self.embed_dim, name="embed")(tokens_BL) * mask_BL[..., None]
        L, length_B1 = tokens_BL.shape[1], mask_BL.sum(axis=1, keepdims=True)
        pooled = []
        for w in self.widths:
            h_BTF = nn.relu(nn.Dense(self.features, name=f"conv{w}")(wide_windows(x_BLD, w)))
            valid_BT = jnp.arange(L + w - 1)[None, :] < length_B1 + w - 1  # starts inside the sentence
            pooled.append(jnp.max(jnp.where(valid_BT[..., None], h_BTF, 0.0), axis=1))
        z_BF = nn.Dropout(self.dropout_rate, deterministic=not train)(jnp.concatenate(pooled, axis=-1))
        return nn.Dense(self.num_classes, name="head")(z_BF)
