"""Losses shared by systems."""

import jax
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
