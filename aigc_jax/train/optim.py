"""Optax optimizers from config: AdamW/Adam/SGD, warmup + cosine/constant schedules, clipping,
a weight-decay mask and gradient accumulation."""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from aigc_jax.errors import UserError


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "name": "adamw",  # adamw | adam | sgd
            "learning_rate": 1e-3,
            "schedule": "cosine",  # cosine | constant
            "warmup_steps": 100,  # linear from rate 0 at step 0; 0 starts at the peak rate
            "min_learning_rate_ratio": 0.1,  # cosine decays to this fraction of the peak
            "b1": 0.9,
            "b2": 0.99,
            "momentum": 0.9,  # sgd only
            "weight_decay": 0.1,
            "grad_clip_norm": 1.0,  # 0 disables clipping
            # > 1 wraps the optimizer in optax.MultiSteps: one update per k train steps, so the schedule
            # (warmup_steps included) counts updates, num_steps // k of them
            "accumulation_steps": 1,
        }
    )


def learning_rate_schedule(config: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """Linear warmup from 0 over `warmup_steps` (step 0 then trains at rate 0), then constant or cosine
    decay; `warmup_steps=0` starts at the peak rate."""
    warmup = config.warmup_steps
    if warmup < 0:
        raise UserError(f"config.optim.warmup_steps is {warmup}; use 0 (no warmup) or more")
    if config.schedule == "constant":
        if not warmup:
            return optax.constant_schedule(config.learning_rate)
        return optax.warmup_constant_schedule(0.0, config.learning_rate, warmup)
    if config.schedule == "cosine":
        decay_steps = max(total_steps, warmup + 1)
        if not warmup:
            return optax.cosine_decay_schedule(
                config.learning_rate, decay_steps, alpha=config.min_learning_rate_ratio
            )
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=config.learning_rate,
            warmup_steps=warmup,
            decay_steps=decay_steps,
            end_value=config.learning_rate * config.min_learning_rate_ratio,
        )
    raise UserError(f"unknown config.optim.schedule {config.schedule!r}; use cosine or constant")


def decay_mask(params: optax.Params) -> optax.Params:
    """Decay matrices and embeddings, not biases or norm scales (the GPT-2 / nanoGPT convention)."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(
    config: ml_collections.ConfigDict, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Returns the optimizer and its learning-rate schedule as a function of the train step (the loop
    logs it). With gradient accumulation over k steps the optimizer's own schedule advances once per
    update, over the run's `total_steps // k` updates."""
    k = config.accumulation_steps
    if k < 1:
        raise UserError(f"config.optim.accumulation_steps must be at least 1, not {k}")
    schedule = learning_rate_schedule(config, max(total_steps // k, 1))
    if config.name == "adamw":
        core = optax.adamw(
            schedule, b1=config.b1, b2=config.b2, weight_decay=config.weight_decay, mask=decay_mask
        )
    elif config.name == "adam":
        core = optax.adam(schedule, b1=config.b1, b2=config.b2)
    elif config.name == "sgd":
        core = optax.sgd(schedule, momentum=config.momentum)
    else:
        raise UserError(f"unknown config.optim.name {config.name!r}; use adamw, adam or sgd")
    tx = (
        optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), core) if config.grad_clip_norm else core
    )
    if k == 1:
        return tx, schedule
    return optax.MultiSteps(tx, every_k_schedule=k), lambda step: schedule(step // k)


@dataclasses.dataclass(frozen=True)
class PerNetwork:
    """One optimizer per top-level subtree of the parameters (a GAN's generator and discriminator).

    Each optimizer keeps its own state, and `update` takes gradients for any subset of the optimizers
    (keyed by name): the networks they do not update get zero updates, and the other optimizers keep
    their state untouched, which is what alternating GAN updates need (a joint `optax.multi_transform`
    update would also advance the moments of the network that is not being trained). An optimizer
    updates the network of its own name unless `shares` names another: `(("pg", "generator"),)` gives
    the generator a second optimizer with moments of its own (SeqGAN's adversarial updates). Frozen and
    hashable, so it can sit in the static part of the train state.
    """

    transforms: tuple[tuple[str, optax.GradientTransformation], ...]
    shares: tuple[tuple[str, str], ...] = ()  # (optimizer, the network it updates)

    def network_of(self, name: str) -> str:
        return dict(self.shares).get(name, name)

    def init(self, params: dict[str, Any]) -> dict[str, Any]:
        return {name: tx.init(params[self.network_of(name)]) for name, tx in self.transforms}

    def update(
        self, grads: dict[str, Any], state: dict[str, Any], params: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        unknown = set(grads) - {name for name, _ in self.transforms}
        assert not unknown, f"gradients for unknown optimizers {unknown}"
        updated = [self.network_of(name) for name in grads]
        assert len(set(updated)) == len(updated), f"two optimizers update one network: {sorted(grads)}"
        updates, new_state = {}, dict(state)
        for name, tx in self.transforms:
            if name in grads:
                network = self.network_of(name)
                updates[network], new_state[name] = tx.update(grads[name], state[name], params[network])
        for network in params:
            if network not in updates:
                updates[network] = jax.tree.map(jnp.zeros_like, params[network])
        return updates, new_state
