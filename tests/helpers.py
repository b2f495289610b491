"""Small builders shared by the tests."""

import pathlib

import jax
import ml_collections

from aigc_jax.systems import gpt_shakespeare
from aigc_jax.train import config as config_lib


def smoke_config(**overrides: str) -> ml_collections.ConfigDict:
    return config_lib.apply_overrides(gpt_shakespeare.get_config("smoke"), overrides)


def smoke_system(workdir: pathlib.Path, **overrides: str) -> gpt_shakespeare.GptShakespeare:
    return gpt_shakespeare.build(smoke_config(**overrides), workdir)


def host(tree):
    return jax.tree.map(lambda x: jax.device_get(x), tree)
