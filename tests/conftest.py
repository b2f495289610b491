"""Test setup shared by all tests: 8 simulated CPU devices, so sharded code runs on one machine.

XLA reads the flag when jax initialises its backend, so it is set here, before any test imports jax.
"""

import os

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
