"""The one place where sharding is decided: the device mesh and the logical-axis rules.

Parameters and activations carry logical axis names (`embed`, `mlp`, `heads`, ...); `RULES` maps them onto
the mesh axes `data`, `fsdp` and `tensor`. Changing `config.mesh.shape` switches between data parallel,
FSDP and tensor parallel without touching model code.
"""

import math
import sys
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from aigc_jax.errors import UserError

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

RULES: tuple[tuple[str, Any], ...] = (
    ("batch", BATCH_AXES),
    ("embed", "fsdp"),  # FSDP shards every weight matrix along its model dimension
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("vocab", "tensor"),
    ("kv", None),
    ("length", None),
    ("qkv", None),
)


def mesh_shape(shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
    """Resolves one `-1` entry to the devices left over, and checks the product."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != len(MESH_AXES):
        raise UserError(f"config.mesh.shape needs {len(MESH_AXES)} sizes for {MESH_AXES}, got {shape}")
    if shape.count(-1) > 1:
        raise UserError(f"config.mesh.shape may have at most one -1, got {shape}")
    fixed = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if num_devices % fixed:
            raise UserError(f"config.mesh.shape {shape}: {num_devices} devices do not divide by {fixed}")
        shape = tuple(num_devices // fixed if s == -1 else s for s in shape)
    if math.prod(shape) != num_devices:
        raise UserError(
            f"config.mesh.shape {shape} needs {math.prod(shape)} devices but {num_devices} are available; "
            "use -1 for one axis to fill the rest"
        )
    return shape


def make_mesh(shape: Sequence[int] = (-1, 1, 1), devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A `(data, fsdp, tensor)` mesh over `devices` (default: all of them)."""
    devices = list(jax.devices() if devices is None else devices)
    resolved = mesh_shape(shape, len(devices))
    # Auto axis types: under the Explicit default of jax >= 0.9, Linen's logical sharding constraints
    # turn into asserts and fail (see shared/ARCHITECTURE.md).
    axis_types = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    return jax.make_mesh(resolved, MESH_AXES, axis_types=axis_types, devices=devices)


def split_cpu_host(num_devices: int) -> None:
    """Has JAX present this host's CPU as `num_devices` devices (`config.mesh.cpu_devices`; 0 keeps JAX's
    default: one, or XLA_FLAGS' --xla_force_host_platform_device_count). Meshes on accelerators ignore it.

    Why: XLA:CPU runs many of a step's matmuls on one thread each, so a one-device step can leave cores
    idle; a data-parallel mesh of one device per core runs the shards side by side (on 2 devices of 2
    cores, transformer_g2p's and gpt_shakespeare's steps took ~0.7–0.9 of their one-device times; the
    convnets' 1.0–1.35, their convolutions already threaded (aigc_jax/host.py); textcnn_reviews' 1.3–1.5,
    all-reducing a large embedding gradient: benchmarks/cpu_devices.py).
    JAX fixes its devices the first time it touches them; after that (a notebook that already ran JAX,
    the tests' 8 simulated devices) the split cannot change, and the run says so and keeps its devices.
    """
    if num_devices < 0:
        raise UserError(f"config.mesh.cpu_devices must be 0 (JAX's default) or a count, not {num_devices}")
    if num_devices == 0:
        return
    try:
        jax.config.update("jax_num_cpu_devices", num_devices)
    except RuntimeError:  # JAX has set up its devices already
        have = len(jax.devices("cpu"))
        if have != num_devices:
            print(
                f"note: config.mesh.cpu_devices={num_devices} not applied: JAX set up {have} CPU devices "
                "before this run; start a fresh process for the split",
                file=sys.stderr,
            )


def mesh_for(config: Any) -> Mesh:
    """The mesh `config.mesh` asks for (after splitting a CPU host as it says), checked against
    `config.train.batch_size`. Configs of workdirs older than `cpu_devices` leave the host as it is."""
    split_cpu_host(config.mesh.get("cpu_devices", 0))
    mesh = make_mesh(config.mesh.shape)
    check_batch_size(config.train.batch_size, mesh)
    return mesh


def divisible_sharding(shape: Sequence[int], sharding: NamedSharding) -> NamedSharding:
    """Replicates each dimension its mesh axes do not divide (e.g. a vocabulary of 85 over tensor=2).

    GPT-2's 50,257-token vocabulary is odd too; padding it would change the published parameter count.
    """
    spec = list(sharding.spec) + [None] * (len(shape) - len(sharding.spec))
    for i, (size, axes) in enumerate(zip(shape, spec, strict=True)):
        names = (axes,) if isinstance(axes, str) else tuple(axes or ())
        if size % math.prod(sharding.mesh.shape[name] for name in names):
            spec[i] = None
    return NamedSharding(sharding.mesh, PartitionSpec(*spec))


def mesh_of(tree: Any) -> Mesh:
    """The mesh a placed pytree (e.g. a restored train state) lives on."""
    return jax.tree.leaves(tree)[0].sharding.mesh


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def batch_divisor(mesh: Mesh) -> int:
    return math.prod(mesh.shape[a] for a in BATCH_AXES)


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """A global batch must split evenly over the data-parallel shards of `mesh`."""
    divisor = batch_divisor(mesh)
    if batch_size % divisor:
        raise UserError(
            f"config.train.batch_size {batch_size} does not divide over the {divisor} "
            f"data-parallel shards of mesh {dict(mesh.shape)}"
        )


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Host-local numpy batch → global jax arrays sharded over the batch axes.

    Each process passes its own slice of the global batch (multi-host); on one host this is the whole
    batch.
    """
    sharding = batch_sharding(mesh)

    def put(x: np.ndarray) -> jax.Array:
        return jax.make_array_from_process_local_data(sharding, np.asarray(x))

    return jax.tree.map(put, batch)
