"""TFDS builders for data that ships inside packages.

Importing a builder module registers its data set with TFDS under the snake-case form of its class
name, so `tfds.data_source("shakespeare", ...)` finds it. Where TFDS's own catalogue already holds that
name (`fashion_mnist`), our class takes another (`FashionMnistDebian`, `fashion_mnist_debian`), and the
catalog opens builders through their class rather than by name. The builders must live in a package:
TFDS locates a builder's files (checksums, metadata) relative to its module.
"""

from aigc_jax.data.builders.chitchat import Chitchat
from aigc_jax.data.builders.cmudict_g2p import CmudictG2p
from aigc_jax.data.builders.digits import Digits
from aigc_jax.data.builders.fashion_mnist import FashionMnistDebian
from aigc_jax.data.builders.fashion_scenes import FashionScenes
from aigc_jax.data.builders.movie_reviews import MovieReviewSentences
from aigc_jax.data.builders.shakespeare import Shakespeare

__all__ = [
    "Chitchat",
    "CmudictG2p",
    "Digits",
    "FashionMnistDebian",
    "FashionScenes",
    "MovieReviewSentences",
    "Shakespeare",
]
