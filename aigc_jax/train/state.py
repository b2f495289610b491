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
from aigc_jax.train.optim import PerNetwork

Optimizer = optax.GradientTransformation | PerNetwork


class TrainState(struct.PyTreeNode):
    """Everything a step changes. `model_state` holds non-parameter collections (BatchNorm statistics)."""

    step: jax.Array
    params: Any
    opt_state: Any
    model_state: Any
    rng: jax.Array
    tx: Optimizer = struct.field(pytree_node=False)

    def apply_gradients(self, grads: Any, *, advance_step: bool = True, **changes: Any) -> "TrainState":
        """One optimizer update. Multi-network states (`PerNetwork`) take gradients for some networks;
        `advance_step=False` lets a step update one network, then another, and count once."""
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        step = self.step + 1 if advance_step else self.step
        return self.replace(step=step, params=params, opt_state=opt_state, **changes)


# params, dropout key -> (loss, aux); aux may hold "metrics" (logged) and "model_state" (carried forward)
LossFn = Callable[[Any, jax.Array], tuple[jax.Array, dict[str, Any]]]


def gradient_step(state: TrainState, loss_fn: LossFn) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer update of a single-network state on `loss_fn`: the train step of every system that
    minimises one loss. Its metrics are the loss, the aux's `metrics` and the gradient norm.

    The dropout key is folded from the state's key and step, so a resumed run draws the same masks as an
    uninterrupted one; aux's `model_state` (BatchNorm statistics) replaces the state's."""
    dropout_rng = jax.random.fold_in(state.rng, state.step)
    (loss, aux), grads = jax.value_and_grad(lambda params: loss_fn(params, dropout_rng), has_aux=True)(
        state.params
    )
    changes = {"model_state": aux["model_state"]} if "model_state" in aux else {}
    metrics = {"loss": loss, **aux.get("metrics", {}), "grad_norm": optax.tree.norm(grads)}
    return state.apply_gradients(grads, **changes), metrics


InitFn = Callable[[jax.Array], dict[str, Any]]  # rng -> Linen variables, boxed with logical names


def _is_box(x: Any) -> bool:
    return isinstance(x, nn.Partitioned)


def state_shardings(init_variables: InitFn, tx: Optimizer, mesh: Mesh) -> Any:
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
    opt_sharding = _opt_state_shardings(tx, abstract_opt_state, params_sharding, replicated)
    model_state_sharding = {k: v for k, v in variable_shardings.items() if k != "params"}
    return TrainState(
        step=replicated,
        params=params_sharding,
        opt_state=opt_sharding,
        model_state=model_state_sharding,
        rng=replicated,
        tx=tx,
    )


def _opt_state_shardings(
    tx: Optimizer, abstract_opt_state: Any, params_sharding: Any, replicated: NamedSharding
) -> Any:
    """Optimizer moments are sharded like their parameters; counters and the like are replicated."""
    if isinstance(tx, PerNetwork):
        return {
            name: _opt_state_shardings(
                inner, abstract_opt_state[name], params_sharding[tx.network_of(name)], replicated
            )
            for name, inner in tx.transforms
        }
    return optax.tree_map_params(
        tx,
        lambda _, sharding: sharding,
        abstract_opt_state,
        params_sharding,
        transform_non_params=lambda _: replicated,
        is_leaf=lambda x: isinstance(x, NamedSharding),
    )


def _init_fn(init_variables: InitFn, tx: Optimizer) -> Callable[[jax.Array], TrainState]:
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
    init_variables: InitFn, tx: Optimizer, mesh: Mesh, rng: jax.Array
) -> tuple[TrainState, Any]:
    """Initialises the state directly into its shardings (no full copy on one device first)."""
    shardings = state_shardings(init_variables, tx, mesh)
    with nn.logical_axis_rules(mesh_lib.RULES):
        state = jax.jit(_init_fn(init_variables, tx), out_shardings=shardings)(rng)
    return state, shardings


def abstract_train_state(init_variables: InitFn, tx: Optimizer, mesh: Mesh) -> Any:
    """The state as ShapeDtypeStructs carrying their shardings: the restore target on any mesh."""
    shardings = state_shardings(init_variables, tx, mesh)
    with nn.logical_axis_rules(mesh_lib.RULES):
        shapes = jax.eval_shape(_init_fn(init_variables, tx), jax.random.PRNGKey(0))
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, shardings)


def param_count(params: Any) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(params))


def apply_model(
    model: nn.Module,
    params: Any,
    model_state: dict[str, Any],
    *args: Any,
    train: bool,
    rng: jax.Array | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Applies a Linen model with its non-parameter collections (BatchNorm statistics).

    In training the collections are mutable and come back updated; otherwise they come back as given.
    `rng` feeds dropout.
    """
    variables = {"params": params, **model_state}
    rngs = {"dropout": rng} if rng is not None else None
    if train and model_state:
        outputs, updates = model.apply(variables, *args, train=True, rngs=rngs, mutable=list(model_state))
        return outputs, {**model_state, **updates}
    return model.apply(variables, *args, train=train, rngs=rngs), model_state


def log_mean_probabilities(logits_of_views: list[jax.Array]) -> jax.Array:
    """Test-time augmentation's prediction: the log of the mean class probabilities over several views of
    the same inputs (each view's logits already mapped back onto the inputs), classes on the last axis.
    Its argmax and cross-entropy are those of the mean probabilities."""
    log_probs = jax.nn.log_softmax(jnp.stack(logits_of_views))
    return jax.nn.logsumexp(log_probs, axis=0) - jnp.log(len(logits_of_views))
