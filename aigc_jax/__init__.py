"""aigc_jax: a JAX/Flax model zoo for AI-generated content."""

from aigc_jax import host

__version__ = "0.1.0"

# Before any JAX computation starts XLA's threads: every CPU train step then reuses its scratch memory
# instead of page-faulting it in afresh (aigc_jax/host.py; ~25% of a transformer step on 2 cores).
host.keep_freed_memory()
