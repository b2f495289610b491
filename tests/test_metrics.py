"""Shared metrics: confusion-matrix accuracies and IoU, Fréchet distance, class entropy."""

import jax.numpy as jnp
import numpy as np

from aigc_jax import metrics


def test_confusion_matrix_accuracy_and_iou():
    labels = jnp.array([0, 0, 1, 1, 2, 2])
    predictions = jnp.array([0, 1, 1, 1, 2, 0])
    weights = jnp.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.0])  # the last row is padding
    confusion = np.asarray(metrics.confusion_matrix(labels, predictions, 3, weights))
    np.testing.assert_array_equal(confusion, [[1, 1, 0], [0, 2, 0], [0, 0, 1]])
    assert metrics.accuracy(confusion) == 4 / 5
    np.testing.assert_allclose(metrics.per_class_accuracy(confusion), [0.5, 1.0, 1.0])
    # IoU: class 0: 1 / (1 + 1), class 1: 2 / (2 + 1), class 2: 1 / 1
    np.testing.assert_allclose(metrics.iou_per_class(confusion), [0.5, 2 / 3, 1.0])
    assert np.isclose(metrics.mean_iou(confusion), (0.5 + 2 / 3 + 1.0) / 3)


def _stats(features):
    moments = metrics.feature_moments(jnp.asarray(features), jnp.ones(len(features)))
    return metrics.gaussian_from_moments(moments["sum"], moments["outer"], float(moments["count"]))


def test_frechet_distance_is_zero_for_a_set_with_itself_and_grows_with_noise():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((2000, 16)).astype(np.float32) @ rng.standard_normal((16, 16)).astype(
        np.float32
    )
    same = metrics.frechet_distance(*_stats(features), *_stats(features))
    assert abs(same) < 1e-3
    distances = [
        metrics.frechet_distance(
            *_stats(features + s * rng.standard_normal(features.shape)), *_stats(features)
        )
        for s in (0.1, 0.5, 1.0, 2.0)
    ]
    assert same < distances[0] < distances[1] < distances[2] < distances[3], distances


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    # Diagonal covariances: FD = |Δμ|² + Σ (σa − σb)²
    mean_a, mean_b = np.array([0.0, 1.0]), np.array([1.0, 1.0])
    cov_a, cov_b = np.diag([4.0, 1.0]), np.diag([1.0, 9.0])
    expected = 1.0 + (2 - 1) ** 2 + (1 - 3) ** 2
    assert np.isclose(metrics.frechet_distance(mean_a, cov_a, mean_b, cov_b), expected)


def test_class_entropy_measures_coverage():
    assert np.isclose(metrics.class_entropy(np.full(10, 7.0)), np.log(10))
    assert metrics.class_entropy(np.array([5.0, 0, 0])) == 0.0


def test_per_class_values_get_readable_metric_names():
    named = metrics.by_class("iou", ("background", "T-shirt/top"), np.array([0.5, 0.25]))
    assert named == {"iou_background": 0.5, "iou_t_shirt_top": 0.25}
