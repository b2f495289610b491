"""The train state pytree and its sharded creation."""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import Mesh, NamedSharding

from aigc_jax.train import mesh as mesh_lib


class TrainState(struct.PyTreeNode):
    """Everything a step changes. `model_state` holds non-parameter collections (BatchNorm statistics)."""

    step: jax.Array
    params: Any
    opt_state: Any
    model_state: Any
    rng: jax.Array
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    def apply_gradients(self, grads: Any, **changes: Any) -> "TrainState":
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        return self.replace(step=self.step + 1, params=params, opt_state=opt_state, **changes)


InitFn = Callable[[jax.Array], dict[str, Any]]  # rng -> Linen variables, boxed with logical names


def _is_box(x: Any) -> bool:
    return isinstance(x, nn.Partitioned)


def state_shardings(init_variables: InitFn, tx: optax.GradientTransformation, mesh: Mesh) -> Any:
    """Shardings of the whole state, decided by the logical names the model gave its parameters."""
    boxed = jax.eval_shape(init_variables, jax.random.PRNGKey(0))
    logical_shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh, mesh_lib.RULES)
    shapes = jax.tree.map(
        lambda x: x.unbox(apply_constraint=False) if _is_box(x) else x, boxed, is_leaf=_is_box
    )
    variable_shardings = jax.tree.map(
        lambda x, s: mesh_lib.divisible_sharding(x.shape, s), shapes, logical_shardings
    )
    params_sharding = variable_shardings["params"]
    replicated = mesh_lib.replicated(mesh)
    abstract_opt_state = jax.eval_shape(lambda params: tx.init(nn.unbox(params)), boxed["params"])
    opt_sharding = optax.tree_map_params(
        tx,
        lambda _, sharding: sharding,
        abstract_opt_state,
        params_sharding,
        transform_non_params=lambda _: replicated,
        is_leaf=lambda x: isinstance(x, NamedSharding),
    )
    model_state_sharding = {k: v for k, v in variable_shardings.items() if k != "params"}
    return TrainState(
        step=replicated,
        params=params_sharding,
        opt_state=opt_sharding,
        model_state=model_state_sharding,
        rng=replicated,
        tx=tx,
    )


def _init_fn(init_variables: InitFn, tx: optax.GradientTransformation) -> Callable[[jax.Array], TrainState]:
    def init(rng: jax.Array) -> TrainState:
        params_rng, state_rng = jax.random.split(rng)
        variables = dict(nn.unbox(init_variables(params_rng)))
        params = variables.pop("params")
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            model_state=variables,
            rng=state_rng,
            tx=tx,
        )

    return init


def create_train_state(
    init_variables: InitFn, tx: optax.GradientTransformation, mesh: Mesh, rng: jax.Array
) -> tuple[TrainState, Any]:
    """Initialises the state directly into its shardings (no full copy on one device first)."""
    shardings = state_shardings(init_variables, tx, mesh)
    with nn.logical_axis_rules(mesh_lib.RULES):
        state = jax.jit(_init_fn(init_variables, tx), out_shardings=shardings)(rng)
    return state, shardings


def abstract_train_state(init_variables: InitFn, tx: optax.GradientTransformation, mesh: Mesh) -> Any:
    """The state as ShapeDtypeStructs carrying their shardings: the restore target on any mesh."""
    shardings = state_shardings(init_variables, tx, mesh)
    with nn.logical_axis_rules(mesh_lib.RULES):
        shapes = jax.eval_shape(_init_fn(init_variables, tx), jax.random.PRNGKey(0))
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, shardings)


def param_count(params: Any) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(params))
