"""Small builders shared by the tests."""

import pathlib

import grain
import jax
import ml_collections
import numpy as np

from aigc_jax.systems import gpt_shakespeare
from aigc_jax.train import config as config_lib
from aigc_jax.train import loop
from aigc_jax.train import mesh as mesh_lib


def smoke_config(**overrides: str) -> ml_collections.ConfigDict:
    return config_lib.apply_overrides(gpt_shakespeare.get_config("smoke"), overrides)


def smoke_system(workdir: pathlib.Path, **overrides: str) -> gpt_shakespeare.GptShakespeare:
    return gpt_shakespeare.build(smoke_config(**overrides), workdir)


def host(tree):
    return jax.tree.map(lambda x: jax.device_get(x), tree)


def run_steps(system, mesh, num_steps, batch=None):
    """`num_steps` jitted train steps from a fresh state on `mesh`; one fixed `batch` if given, else the
    system's training stream. Returns the state and each step's metrics on the host."""
    with loop.activate(mesh):
        state, train_step = loop.fresh_train_step(system, mesh)
        batches = iter(system.train_dataset())
        history = []
        for _ in range(num_steps):
            state, metrics = train_step(state, mesh_lib.shard_batch(batch or next(batches), mesh))
            history.append(host(metrics))
    return state, history


def step_flops(system, mesh, batch):
    """FLOPs per device of the system's compiled train step on `mesh` (XLA's count: loop bodies once)."""
    with loop.activate(mesh):
        state, train_step = loop.fresh_train_step(system, mesh)
        compiled = train_step.lower(state, mesh_lib.shard_batch(batch, mesh)).compile()
    return compiled.cost_analysis()["flops"]


def single_device_mesh():
    return mesh_lib.make_mesh((1, 1, 1), jax.devices()[:1])


def assert_resumes_exactly(ds: grain.IterDataset, skip: int, take: int) -> tuple[grain.DatasetIterator, list]:
    """Reads `skip` batches of a fresh iterator of `ds`, saves its state, reads `take` more, and checks that
    an iterator restored from that state yields the same `take` batches. Returns the first iterator and
    those batches."""
    it = iter(ds)
    assert isinstance(it, grain.DatasetIterator)
    for _ in range(skip):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(take)]
    resumed = iter(ds)
    resumed.set_state(state)
    for want in expected:
        assert_batches_equal(next(resumed), want)
    return it, expected


def assert_batches_equal(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
