"""TFDS builders for data that ships inside packages.

Importing a builder module registers its data set with TFDS under the module's class name, so
`tfds.data_source("shakespeare", ...)` finds it. The builders must live in a package: TFDS locates a
builder's files (checksums, metadata) relative to its module.
"""

from aigc_jax.data.builders.shakespeare import Shakespeare

__all__ = ["Shakespeare"]
