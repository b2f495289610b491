"""What the classifiers' `sample` returns (`cnn_fashion`, `fasttext_reviews`, `textcnn_reviews`): the
confusion matrix over the evaluation split, printed as per-class accuracy and drawn as a heatmap."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import jax
import numpy as np

from aigc_jax import metrics, visualize
from aigc_jax.train import loop
from aigc_jax.train import mesh as mesh_lib
from aigc_jax.train.state import TrainState


@dataclasses.dataclass(frozen=True)
class ClassifierReport:
    """The confusion matrix over the evaluation split, rows = true classes."""

    confusion: np.ndarray
    class_names: tuple[str, ...]

    @classmethod
    def evaluate(cls, system: Any, state: TrainState, num_examples: int) -> ClassifierReport:
        """The report of `system` (with `eval_step` summing a `confusion`) over its evaluation split, or
        over the batches that hold its first `num_examples` (> 0)."""
        batch_size = system.config.train.batch_size
        batches = -(-num_examples // batch_size) if num_examples else None
        totals = loop.evaluate_totals(
            system, state, jax.jit(system.eval_step), mesh_lib.mesh_of(state), batches
        )
        return cls(totals["confusion"], tuple(system.data.class_names))

    def __str__(self) -> str:
        per_class = metrics.per_class_accuracy(self.confusion)
        lines = [f"accuracy {metrics.accuracy(self.confusion):.4f} over {int(self.confusion.sum())} examples"]
        lines += [f"  {name:<14} {acc:.4f}" for name, acc in zip(self.class_names, per_class, strict=True)]
        return "\n".join(lines)

    def write(self, directory: pathlib.Path, name: str) -> list[pathlib.Path]:
        """`name_confusion.png` (the heatmap) and `name_per_class.txt` (this report's text)."""
        directory.mkdir(parents=True, exist_ok=True)
        text = directory / f"{name}_per_class.txt"
        text.write_text(str(self) + "\n")
        return [
            visualize.save_png(visualize.heatmap(self.confusion), directory / f"{name}_confusion.png"),
            text,
        ]
