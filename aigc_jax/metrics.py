"""Metrics shared by the systems, in one place.

Inside jitted eval steps, metrics are *sums* over a batch (confusion matrices, feature moments), so the
loop can add them over batches and devices; the functions here turn the sums into reported numbers.
Host-side functions use float64 numpy: covariances and Fréchet distances lose digits in float32.
"""

import collections
import re
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sacrebleu.metrics.bleu import BLEU
from sacrebleu.metrics.helpers import extract_all_word_ngrams

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


# --- sequence outputs (grapheme-to-phoneme): word and phoneme error rates -------------------------


def edit_distance(
    hyp_BN: jax.Array, hyp_length_B: jax.Array, ref_BM: jax.Array, ref_length_B: jax.Array
) -> jax.Array:
    """Levenshtein distance [B] between the first `hyp_length` tokens of each hypothesis and the first
    `ref_length` of its reference (insertion, deletion and substitution cost 1 each). Jit-able: the
    dynamic programme runs one vectorised row per hypothesis token."""
    B, M = ref_BM.shape
    j_M1 = jnp.arange(M + 1)
    never = M + hyp_BN.shape[1] + 1  # larger than any distance

    def next_row(row_BM1: jax.Array, inputs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        i, token_B = inputs
        substitute_BM = row_BM1[:, :-1] + (token_B[:, None] != ref_BM)
        best_BM1 = jnp.minimum(row_BM1 + 1, jnp.pad(substitute_BM, ((0, 0), (1, 0)), constant_values=never))
        # insertions chain along the row: D[j] = min over k <= j of best[k] + (j - k), a running minimum
        new_BM1 = jax.lax.cummin(best_BM1 - j_M1, axis=1) + j_M1
        return jnp.where((i < hyp_length_B)[:, None], new_BM1, row_BM1), None

    first_BM1 = jnp.broadcast_to(j_M1, (B, M + 1))  # the empty hypothesis prefix: j deletions
    steps = (jnp.arange(hyp_BN.shape[1]), hyp_BN.T)
    last_BM1, _ = jax.lax.scan(next_row, first_BM1, steps)
    return jnp.take_along_axis(last_BM1, ref_length_B[:, None], axis=1)[:, 0]


def closest_reference_errors(
    hyp_BN: jax.Array,
    hyp_length_B: jax.Array,
    refs_BRM: jax.Array,
    ref_lengths_BR: jax.Array,
    weights_B: jax.Array,
) -> dict[str, jax.Array]:
    """Sums for `wer` and `per` when an output may match any of R references (a word's pronunciations).

    A hypothesis is scored against its closest reference; references of length 0 are padding. Returns
    weighted sums: `word_errors` (outputs equal to no reference), `edits` (distance to the closest one),
    `reference_tokens` (that reference's length) and `words`.
    """
    B, R, M = refs_BRM.shape
    distance_BR = edit_distance(
        jnp.repeat(hyp_BN, R, axis=0),
        jnp.repeat(hyp_length_B, R),
        refs_BRM.reshape(B * R, M),
        ref_lengths_BR.reshape(B * R),
    ).reshape(B, R)
    distance_BR = jnp.where(ref_lengths_BR > 0, distance_BR, jnp.iinfo(jnp.int32).max)
    closest_B = jnp.argmin(distance_BR, axis=1)
    edits_B = jnp.take_along_axis(distance_BR, closest_B[:, None], axis=1)[:, 0]
    length_B = jnp.take_along_axis(ref_lengths_BR, closest_B[:, None], axis=1)[:, 0]
    return {
        "word_errors": jnp.sum(weights_B * (edits_B > 0)),
        "edits": jnp.sum(weights_B * edits_B),
        "reference_tokens": jnp.sum(weights_B * length_B),
        "words": jnp.sum(weights_B),
    }


def wer(word_errors: float, words: float) -> float:
    """Word error rate: the share of words whose output equals none of their references."""
    return float(word_errors / words)


def per(edits: float, reference_tokens: float) -> float:
    """Phoneme (token) error rate: edit operations over the length of the closest references."""
    return float(edits / reference_tokens)


# --- generated text: BLEU against references, self-BLEU and distinct-n ----------------------------
# Sentences are whitespace-separated tokens. BLEU-4 here is the text-GAN convention (SeqGAN, Texygen):
# each generated sentence is scored against *all* reference sentences at once (an n-gram counts as
# matched up to its largest count in any one reference; the brevity penalty uses the closest reference
# length), and the sentence scores are averaged. The formula and its smoothing are sacrebleu's
# (`BLEU.compute_bleu`, "floor" smoothing 0.1 = NLTK's method1, effective order for short sentences);
# only the multi-reference clipping is done here, from counts gathered once, because sacrebleu would
# re-read thousands of references for every sentence.

BLEU_ORDER = 4
Ngrams = collections.Counter  # n-gram tuple -> count, orders 1..BLEU_ORDER


def _ngrams(sentence: str) -> tuple[Ngrams, int]:
    return extract_all_word_ngrams(sentence, 1, BLEU_ORDER)


def _closest_length(lengths: collections.Counter, length: int) -> int:
    """The reference length closest to `length` (the shorter on a tie, as sacrebleu and NLTK)."""
    return min((n for n, count in lengths.items() if count > 0), key=lambda n: (abs(n - length), n))


def _sentence_bleu(ngrams: Ngrams, length: int, clip: Callable[[tuple], int], reference_length: int) -> float:
    correct, total = [0] * BLEU_ORDER, [0] * BLEU_ORDER
    for ngram, count in ngrams.items():
        total[len(ngram) - 1] += count
        correct[len(ngram) - 1] += min(count, clip(ngram))
    score = BLEU.compute_bleu(
        correct,
        total,
        length,
        reference_length,
        smooth_method="floor",
        smooth_value=0.1,
        effective_order=True,
    )
    return score.score / 100.0


def bleu4(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean sentence BLEU-4 (0..1) of each hypothesis against all `references` (see above)."""
    most: dict[tuple, int] = {}
    for reference in references:
        for ngram, count in _ngrams(reference)[0].items():
            most[ngram] = max(most.get(ngram, 0), count)
    lengths = collections.Counter(len(reference.split()) for reference in references)
    scores = []
    for hypothesis in hypotheses:
        ngrams, length = _ngrams(hypothesis)
        scores.append(
            _sentence_bleu(ngrams, length, lambda g: most.get(g, 0), _closest_length(lengths, length))
        )
    return float(np.mean(scores))


def self_bleu4(samples: Sequence[str]) -> float:
    """Mean BLEU-4 of each sample against all the *other* samples (Zhu et al., 2018): high when the
    generator repeats itself, so lower is more diverse."""
    if len(samples) < 2:
        raise ValueError(f"self-BLEU compares each sample with the others; got {len(samples)} sample(s)")
    counted = [_ngrams(sample) for sample in samples]
    top2: dict[tuple, list[tuple[int, int]]] = {}  # n-gram -> its two largest (count, sample index)
    for index, (ngrams, _) in enumerate(counted):
        for ngram, count in ngrams.items():
            best = top2.setdefault(ngram, [])
            best.append((count, index))
            best.sort(reverse=True)
            del best[2:]
    lengths = collections.Counter(length for _, length in counted)
    scores = []
    for index, (ngrams, length) in enumerate(counted):

        def clip(ngram: tuple, index: int = index) -> int:
            return next((count for count, owner in top2[ngram] if owner != index), 0)

        others = lengths - collections.Counter([length])
        scores.append(_sentence_bleu(ngrams, length, clip, _closest_length(others, length)))
    return float(np.mean(scores))


def distinct_n(samples: Sequence[str], n: int) -> float:
    """Distinct-n (Li et al., 2016): distinct n-grams over all n-grams in the samples (0 when none)."""
    ngrams = [
        tuple(tokens[i : i + n])
        for tokens in (sample.split() for sample in samples)
        for i in range(len(tokens) - n + 1)
    ]
    return len(set(ngrams)) / len(ngrams) if ngrams else 0.0


def classification_sums(
    logits_BC: jax.Array, labels_B: jax.Array, weights_B: jax.Array, num_classes: int
) -> dict[str, jax.Array]:
    """A classifier's eval-step sums: weighted NLL, confusion matrix and weight (inside `jit`)."""
    nll_B = optax.softmax_cross_entropy_with_integer_labels(logits_BC, labels_B)
    confusion = confusion_matrix(labels_B, jnp.argmax(logits_BC, -1), num_classes, weights_B)
    return {"nll": jnp.sum(nll_B * weights_B), "confusion": confusion, "weight": weights_B.sum()}


def classification_summary(totals: dict[str, np.ndarray], class_names: Sequence[str]) -> dict[str, float]:
    """Loss, accuracy and per-class accuracy from summed `classification_sums`."""
    per_class = per_class_accuracy(totals["confusion"])
    return {
        "loss": float(totals["nll"] / totals["weight"]),
        "accuracy": accuracy(totals["confusion"]),
        **by_class("accuracy", class_names, per_class),
    }
