"""Losses shared by systems."""

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Cross-entropy of integer `labels` `[...]` under `logits` `[..., C]`, one value per label.

    With `label_smoothing` s the target is the one-hot label scaled by 1 - s plus s spread uniformly over
    the C classes (Szegedy et al., 2016; `optax.smooth_labels`), so the loss of a perfect prediction
    stays above zero and the logits stop growing once the classes are well apart.
    """
    if not label_smoothing:
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def soft_jaccard(logits: jax.Array, labels: jax.Array, smooth: float = 1.0) -> jax.Array:
    """1 - the soft mean IoU of integer `labels` `[...]` under `logits` `[..., C]`, over the whole batch.

    Per class c, with p the softmax probability of c and y the indicator of label c at each position:
    IoU_c = (sum p*y + smooth) / (sum (p + y - p*y) + smooth), a differentiable stand-in for the IoU of
    the argmax (Rahman & Wang, 2016), averaged over the C classes. Mean IoU weighs every class alike,
    however few its pixels; per-pixel cross-entropy weighs pixels alike, so the two disagree on small
    items and thin parts. `smooth` keeps a class absent from the batch near IoU 1 as long as it is not
    predicted.
    """
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).reshape(-1, logits.shape[-1])
    onehot = jax.nn.one_hot(labels.reshape(-1), logits.shape[-1], dtype=jnp.float32)
    intersection = jnp.sum(probs * onehot, axis=0)
    union = jnp.sum(probs + onehot, axis=0) - intersection
    return 1.0 - jnp.mean((intersection + smooth) / (union + smooth))
