"""aigc_jax: a JAX/Flax model zoo for AI-generated content."""

__version__ = "0.1.0"
