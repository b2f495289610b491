"""Metrics shared by the systems, in one place.

Inside jitted eval steps, metrics are *sums* over a batch (confusion matrices, feature moments), so the
loop can add them over batches and devices; the functions here turn the sums into reported numbers.
Host-side functions use float64 numpy: covariances and Fréchet distances lose digits in float32.
"""

import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# --- classification and segmentation --------------------------------------------------------------


def confusion_matrix(
    labels: jax.Array, predictions: jax.Array, num_classes: int, weights: jax.Array
) -> jax.Array:
    """[classes, classes] weighted counts; rows are true classes, columns predictions. Any shapes."""
    index = labels.reshape(-1) * num_classes + predictions.reshape(-1)
    counts = jnp.zeros(num_classes * num_classes, jnp.float32).at[index].add(weights.reshape(-1))
    return counts.reshape(num_classes, num_classes)


def accuracy(confusion: np.ndarray) -> float:
    """Top-1 accuracy (or pixel accuracy, for a confusion matrix over pixels)."""
    confusion = np.asarray(confusion, np.float64)
    return float(np.trace(confusion) / np.sum(confusion))


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Recall of each true class; NaN for a class with no examples."""
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(confusion) / totals


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """Intersection over union of each class; NaN for a class absent from both truth and prediction."""
    intersection = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return intersection / union


def mean_iou(confusion: np.ndarray) -> float:
    """The mean of the per-class IoUs over the classes that occur (in truth or prediction)."""
    return float(np.nanmean(iou_per_class(confusion)))


def by_class(prefix: str, class_names: Sequence[str], values: np.ndarray) -> dict[str, float]:
    """Per-class values as scalar metrics:
    ("accuracy", ["T-shirt/top"], [0.9]) → {"accuracy_t_shirt_top": 0.9}."""
    return {
        f"{prefix}_{'_'.join(re.findall(r'[a-z0-9]+', name.lower()))}": float(value)
        for name, value in zip(class_names, values, strict=True)
    }


# --- generative models ----------------------------------------------------------------------------


def feature_moments(features_BD: jax.Array, weights_B: jax.Array) -> dict[str, jax.Array]:
    """Weighted sums from which a mean and covariance follow: `sum` [D], `outer` [D, D], `count`."""
    weighted = features_BD * weights_B[:, None]
    return {
        "sum": weighted.sum(axis=0),
        "outer": weighted.T @ features_BD,
        "count": weights_B.sum(),
    }


def gaussian_from_moments(
    total: np.ndarray, outer: np.ndarray, count: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance from summed features and summed outer products."""
    total, outer = np.asarray(total, np.float64), np.asarray(outer, np.float64)
    mean = total / count
    covariance = (outer - count * np.outer(mean, mean)) / (count - 1)
    return mean, covariance


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Fréchet distance between two Gaussians (the formula of FID, Heusel et al. 2017):
    |μa − μb|² + tr(Σa + Σb − 2 (Σa Σb)^½).

    tr((Σa Σb)^½) is computed as tr((Σa^½ Σb Σa^½)^½), whose argument is symmetric positive
    semi-definite, so two symmetric eigendecompositions replace a general matrix square root.
    """
    root_a = _sqrt_psd(cov_a)
    cross = _sqrt_psd(root_a @ cov_b @ root_a)
    diff = mean_a - mean_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(cross))


def class_entropy(class_counts: np.ndarray) -> float:
    """Entropy (nats) of a class histogram, e.g. a classifier's predictions over generated samples:
    log(10) ≈ 2.303 when all ten classes are equally covered, 0 when one class is all there is."""
    p = np.asarray(class_counts, np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log(p)).sum())
