"""aigc_jax: a JAX/Flax model zoo for AI-generated content."""

from aigc_jax import host

__version__ = "0.1.0"

host.use_threaded_convolutions()  # before JAX first compiles (aigc_jax/host.py)
