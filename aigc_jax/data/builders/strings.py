"""Strings in TFDS builders that must build without TensorFlow.

`tfds.features.Text` needs TensorFlow to encode, so our builders store a string as its UTF-8 bytes in a
variable-length `uint8` tensor; `catalog.records()` decodes every such feature back to `str`.
"""

import numpy as np
import tensorflow_datasets as tfds


def string_feature() -> tfds.features.Tensor:
    return tfds.features.Tensor(shape=(None,), dtype=np.uint8)


def utf8(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
