"""What the sentence classifiers (`fasttext_reviews`, `textcnn_reviews`) share: data, steps, evaluation.

A system module subclasses `SentenceClassifier` with its model (`make_model`) and, where it needs them,
fixed statistics of the training sentences (`fixed_variables`, e.g. NB ratios) and a constraint applied
to the parameters after every update (`constrain`, e.g. Kim's max-norm). Training minimises softmax
cross-entropy; evaluation sums a confusion matrix, so `accuracy` is exact over the whole evaluation
side, and "sampling" reports that confusion matrix with per-class accuracy, or classifies the sentences
it is given (`aigc-jax sample SYSTEM --workdir W --text "a gorgeous film | a dull mess"`).
"""

import abc
import dataclasses
import pathlib
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aigc_jax import metrics
from aigc_jax.data import text, text_classification
from aigc_jax.systems.base import sample_options, write_texts
from aigc_jax.systems.classifier_report import ClassifierReport
from aigc_jax.train import optim
from aigc_jax.train.state import TrainState, gradient_step


def max_norm(kernel_FC: jax.Array, limit: float) -> jax.Array:
    """Kim (2014)'s constraint: each class's weight vector (a kernel column) longer than `limit` in l2
    norm is rescaled to length `limit`."""
    norm_C = jnp.linalg.norm(kernel_FC, axis=0)
    return kernel_FC * jnp.minimum(1.0, limit / jnp.maximum(norm_C, 1e-12))


@dataclasses.dataclass
class SentenceClassifier(abc.ABC):
    """The `System` for a classifier of sentences; subclasses choose the model (a subclass without
    `make_model` cannot be built)."""

    config: ml_collections.ConfigDict
    tokenizer: text.Tokenizer

    def __post_init__(self) -> None:
        c = self.config
        self.data = text_classification.SentenceSplits(
            c.data, self.tokenizer, c.train.batch_size, c.train.seed
        )
        self.model = self.make_model()
        self.tx, self.schedule = optim.make_optimizer(c.optim, c.train.num_steps)

    @abc.abstractmethod
    def make_model(self) -> nn.Module:
        """The classifier network: each subclass (`fasttext_reviews`, `textcnn_reviews`) defines its own."""

    def fixed_variables(self) -> dict[str, Any]:
        """Model collections that are statistics of the training data, not trained: none by default."""
        return {}

    def constrain(self, params: Any) -> Any:
        """The parameters after an update, projected onto a constraint set: unconstrained by default."""
        return params

    # --- model and steps -------------------------------------------------------------------------

    def init_variables(self, rng: jax.Array) -> dict[str, Any]:
        tokens = jnp.zeros((1, self.data.max_len), jnp.int32)
        return {**self.model.init(rng, tokens), **self.fixed_variables()}

    def _logits(self, state: TrainState, params: Any, tokens: jax.Array, **kwargs: Any) -> jax.Array:
        return self.model.apply({"params": params, **state.model_state}, tokens, **kwargs)

    def train_step(
        self, state: TrainState, batch: dict[str, jax.Array]
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        def loss_fn(params: Any, dropout_rng: jax.Array) -> tuple[jax.Array, dict[str, Any]]:
            logits_BC = self._logits(
                state, params, batch["tokens"], train=True, rngs={"dropout": dropout_rng}
            )
            loss = optax.softmax_cross_entropy_with_integer_labels(logits_BC, batch["label"]).mean()
            return loss, {"metrics": {"accuracy": jnp.mean(jnp.argmax(logits_BC, -1) == batch["label"])}}

        state, metrics = gradient_step(state, loss_fn)
        return state.replace(params=self.constrain(state.params)), metrics

    def eval_step(self, state: TrainState, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        logits_BC = self._logits(state, state.params, batch["tokens"])
        return metrics.classification_sums(logits_BC, batch["label"], batch["weight"], self.data.num_classes)

    def summarize_eval(self, totals: dict[str, np.ndarray]) -> dict[str, float]:
        return metrics.classification_summary(totals, self.data.class_names)

    # --- data ------------------------------------------------------------------------------------

    def train_dataset(self) -> grain.IterDataset:
        return self.data.train_dataset()

    def eval_batches(self, max_batches: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        return self.data.eval_batches(max_batches)

    def count_items(self, batch: dict[str, np.ndarray]) -> int:
        return int(batch["tokens"].shape[0])

    # --- "sampling": the confusion matrix, or the classes of given sentences ---------------------

    def sample(self, state: TrainState, rng: jax.Array, **options: Any) -> ClassifierReport | list[str]:
        """With `text`, one line per sentence of it (sentences separated by " | "): the predicted class,
        its probability and the sentence. Without, the confusion matrix over the evaluation side
        (`num_samples` > 0 reads that many batches)."""
        o = sample_options(self.config.sample, options)
        if o["text"]:
            return self.classify(state, [s.strip() for s in str(o["text"]).split(" | ")])
        return ClassifierReport.evaluate(self, state, o["num_samples"])

    def classify(self, state: TrainState, sentences: list[str]) -> list[str]:
        """One line per sentence: the predicted class, its probability, the sentence."""
        ids = [self.tokenizer.encode(sentence) for sentence in sentences]
        tokens = text_classification.pad_ids(ids, max(1, *(len(i) for i in ids)))
        logits_BC = jax.jit(self._logits)(state, state.params, tokens)
        probs_BC = np.asarray(jax.nn.softmax(logits_BC, axis=-1))
        return [
            f"{self.data.class_names[p.argmax()]} {p.max():.3f}  {sentence}"
            for p, sentence in zip(probs_BC, sentences, strict=True)
        ]

    def write_samples(
        self, outputs: ClassifierReport | list[str], directory: pathlib.Path, name: str
    ) -> list[pathlib.Path]:
        if isinstance(outputs, list):
            return write_texts(outputs, directory, f"{name}_classes", separator="\n")
        return outputs.write(directory, name)


def sample_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "num_samples": 0,  # 0: the whole evaluation side
            "text": "",  # sentences to classify, separated by " | "; empty: the confusion matrix
        }
    )
