"""SeqGAN text generation (source questions 15 and 29: a GAN that generates text).

The source's snippets pass gradients from an LSTM discriminator through sampled tokens, which cannot
work: sampling is not differentiable. SeqGAN (Yu et al., AAAI 2017) treats the generator as a policy
instead. Training runs in three phases, chosen inside the one jitted train step from `state.step`
(`lax.switch`), so `aigc-jax train seqgan` resumes anywhere in them:

1. `phases.mle_steps` steps of maximum-likelihood pre-training of the LSTM generator on real sequences;
2. `phases.d_pretrain_steps` steps of discriminator pre-training: the CNN learns real (label 1) against
   fresh generated sequences (label 0);
3. adversarial rounds of one policy-gradient generator step followed by `phases.d_steps` discriminator
   steps on fresh negatives. The generator step samples a batch, estimates each token's action value —
   the discriminator's probability "real" averaged over `pg.num_rollouts` Monte-Carlo completions of
   the prefix ending at that token (the paper: 16), the whole sequence's own probability for the last
   token — and takes a REINFORCE step, −mean Q·log G(y_t | y_<t). The roll-out policy is the
   generator itself, as in the paper's text (its code uses a delayed copy). These steps update the
   generator through an Adam state of their own, as the paper's code does (`pg.separate_optimizer`;
   sharing pre-training's, whose second moments are large, shrinks steps whose rewards are small).

`phases.adversarial=false` turns phases 2 and 3 into more maximum-likelihood steps: the MLE-only
baseline of the same run length. The train metrics `mle_loss`, `d_loss`, `pg_loss` and `reward` are 0
in the phases that do not compute them (`phase` says which ran; logged means can mix two phases).

Data (`config.data.source`):
- `oracle`, the paper's synthetic benchmark: a randomly initialised LSTM (`config.oracle`: embedding
  32, hidden 32, weights ~ N(0, 1), vocabulary 5,000) is the true model of the data; 10,000 training
  and 10,000 evaluation sequences of length 20 are sampled from it, all fixed by `data.oracle_seed`.
  `oracle_nll` is the oracle's mean per-token NLL of sequences *generated* by the trained generator
  (the paper's NLL-oracle: random 10.310, MLE 9.038, SeqGAN 8.736); `oracle_nll_real` is that of the
  held-out real sequences, the floor.
- `shakespeare`: lines of the embedded `shakespeare` works of 4..20 word tokens (`text.WordTokenizer`,
  the 5,000 commonest words of the training lines; the rest read `<unk>`), padded to 20 with padding
  tokens, which the generator learns to emit after a line ends. Text quality (BLEU-4 against the
  validation lines, self-BLEU, distinct-n; `text_metrics`) is measured on the host from samples.

Evaluation (every split example once): `nll`, the generator's per-token NLL of the evaluation
sequences, padding included; the discriminator's accuracies on them and on as many generated
sequences (drawn from keys fixed by each example's index, so every evaluation sees the same draws);
and, for the oracle, `oracle_nll` and `oracle_nll_real`.

Presets: `smoke` (seconds, tests), `oracle` and `shakespeare` (the recorded CPU runs,
experiments/seqgan.py), `full` (the paper's oracle schedule and discriminator, for an accelerator).
"""

import dataclasses
import pathlib
from collections.abc import Iterator
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aigc_jax import metrics
from aigc_jax.data import in_memory, sequences, text
from aigc_jax.errors import UserError
from aigc_jax.models import seqgan as nets
from aigc_jax.systems.base import sample_options, write_texts
from aigc_jax.train import loop, optim
from aigc_jax.train.state import TrainState

NAME = "seqgan"
PRESETS = ("smoke", "oracle", "shakespeare", "full")
NETWORKS = ("generator", "discriminator")
PHASES = ("mle", "discriminator", "policy_gradient")

# The paper's discriminator: 12 filter widths, 1,720 feature maps, embedding 64.
PAPER_FILTER_SIZES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20)
PAPER_NUM_FILTERS = (100, 200, 200, 200, 200, 100, 100, 100, 100, 100, 160, 160)
_EVAL_SEED = 0x5E9  # keys of the generated sequences that evaluations score


def get_config(preset: str = "oracle") -> ml_collections.ConfigDict:
    config = loop.system_config(NAME, preset, PRESETS)
    config.data = ml_collections.ConfigDict(
        {
            "source": "oracle",  # oracle | shakespeare
            "dir": "",
            "seq_len": 20,
            "vocab_size": 5000,
            "oracle_seed": 0,
            "num_train": 10_000,  # oracle sequences
            "num_eval": 10_000,
            "min_tokens": 4,  # shakespeare lines
        }
    )
    config.oracle = ml_collections.ConfigDict({"embed_dim": 32, "hidden_dim": 32, "init_std": 1.0})
    config.model = ml_collections.ConfigDict(
        {
            "embed_dim": 32,
            "hidden_dim": 32,
            "init_std": 0.1,
            "d_embed_dim": 64,
            "d_filter_sizes": PAPER_FILTER_SIZES,
            "d_num_filters": PAPER_NUM_FILTERS,
            "d_dropout": 0.25,  # the paper's keep probability 0.75
        }
    )
    config.phases = ml_collections.ConfigDict(
        {"mle_steps": 1000, "d_pretrain_steps": 500, "d_steps": 10, "adversarial": True}
    )
    # separate_optimizer: the policy-gradient steps get an optimizer state of their own (the paper's
    # code: a second Adam), not the one that pre-training's moments fill. With the shared one (false,
    # and every workdir written before the key existed) the `oracle` preset's SeqGAN scored 9.059, with
    # its own 8.864 (MLE 8.958), and the `full` preset's generator barely moved.
    config.pg = ml_collections.ConfigDict({"num_rollouts": 16, "separate_optimizer": True})
    config.sample = ml_collections.ConfigDict({"num_samples": 8})
    config.train.update(batch_size=64, eval_batches=20)
    # The paper's code: Adam 0.01 with gradients clipped to norm 5 for the generator, Adam 1e-4 for the
    # discriminator; constant rates, so a run can be extended (more steps) without changing its past.
    config.optim.update(
        name="adam", learning_rate=1e-2, schedule="constant", warmup_steps=1, grad_clip_norm=5.0
    )
    config.optim_d = optim.default_config()
    config.optim_d.update(
        name="adam", learning_rate=1e-4, schedule="constant", warmup_steps=1, grad_clip_norm=0.0
    )

    if preset == "smoke":
        config.data.update(vocab_size=40, seq_len=8, num_train=256, num_eval=64)
        config.oracle.update(embed_dim=8, hidden_dim=8)
        config.model.update(
            embed_dim=8, hidden_dim=8, d_embed_dim=8, d_filter_sizes=(1, 2, 3), d_num_filters=(4, 4, 4)
        )
        config.phases.update(mle_steps=6, d_pretrain_steps=4, d_steps=1)
        config.pg.num_rollouts = 4
        config.train.update(
            num_steps=14, batch_size=16, log_every=5, eval_every=10, eval_batches=2, checkpoint_every=10
        )
    elif preset in ("oracle", "shakespeare"):
        # 2 CPU cores shared with other jobs: a policy-gradient step of 64 sequences × 16 rollouts took
        # ~7.6 s (its rollouts draw ~200,000 tokens from 5,000 words) and an MLE step 0.18 s, so the
        # paper's schedule is scaled down (see experiments/seqgan.py): 1,500 MLE steps, 300
        # discriminator steps, 40 rounds of 1 policy-gradient + 5 discriminator steps. The discriminator
        # keeps the paper's widths 1-5, 10, 15, 20 with about a fifth of its feature maps (330) and
        # embedding 32.
        config.model.update(
            d_embed_dim=32,
            d_filter_sizes=(1, 2, 3, 4, 5, 10, 15, 20),
            d_num_filters=(25, 50, 50, 50, 50, 25, 40, 40),
        )
        config.phases.update(mle_steps=1500, d_pretrain_steps=300, d_steps=5)
        config.train.update(num_steps=1500 + 300 + 40 * 6, log_every=20, eval_every=500, checkpoint_every=500)
        if preset == "shakespeare":
            config.data.source = "shakespeare"
    elif preset == "full":
        # The paper's code: 120 epochs of MLE (10,000 sequences, batch 64; 156 of our steps each), 50 × 3
        # epochs of discriminator pre-training (10,000 real + 10,000 generated sequences; 156 of our
        # steps of 64 + 64), 200 adversarial rounds of 1 generator step + 5 × 3 D epochs: 510,000 steps.
        # Here, to fit ~5 minutes of one GPU: its MLE, 100 D epochs, and 100 rounds of 1 generator step
        # + 1 D epoch, 50,020 steps.
        config.phases.update(mle_steps=120 * 156, d_pretrain_steps=100 * 156, d_steps=156)
        config.train.update(
            num_steps=120 * 156 + 100 * 156 + 100 * (1 + 156),
            log_every=100,
            eval_every=2500,
            checkpoint_every=2500,
        )
    return config


@dataclasses.dataclass
class SeqGan:
    """The `System`: generator and discriminator in one state, updated by phase."""

    config: ml_collections.ConfigDict
    tokenizer: text.Tokenizer | None  # None for the oracle (its tokens are plain ids)
    splits: dict[str, np.ndarray]  # "train" / "eval": int32 [N, T]

    def __post_init__(self) -> None:
        c = self.config
        self.seq_len = c.data.seq_len
        self.vocab_size = self.tokenizer.vocab_size if self.tokenizer is not None else c.data.vocab_size
        m = c.model
        self.generator = nets.LstmGenerator(self.vocab_size, m.embed_dim, m.hidden_dim, m.init_std)
        self.discriminator = nets.CnnDiscriminator(
            self.vocab_size, m.d_embed_dim, tuple(m.d_filter_sizes), tuple(m.d_num_filters), m.d_dropout
        )
        if max(m.d_filter_sizes) > self.seq_len:
            raise UserError(
                f"discriminator filter width {max(m.d_filter_sizes)} exceeds data.seq_len {self.seq_len}; "
                "narrow --config.model.d_filter_sizes"
            )
        g_tx, self.schedule = optim.make_optimizer(c.optim, c.train.num_steps)
        d_tx, _ = optim.make_optimizer(c.optim_d, c.train.num_steps)
        self.separate_pg_optimizer = c.pg.get("separate_optimizer", False)  # False in older workdirs
        if self.separate_pg_optimizer:  # the paper's code: a second Adam, fresh moments, same settings
            self.tx = optim.PerNetwork(
                (("generator", g_tx), ("discriminator", d_tx), ("policy_gradient", g_tx)),
                shares=(("policy_gradient", "generator"),),
            )
        else:
            self.tx = optim.PerNetwork((("generator", g_tx), ("discriminator", d_tx)))
        if c.data.source == "oracle":
            self.oracle, self.oracle_params = make_oracle(c)

    # --- model and steps -------------------------------------------------------------------------

    def init_variables(self, rng: jax.Array) -> dict[str, Any]:
        g_rng, d_rng = jax.random.split(rng)
        g_vars = nets.init_generator(self.generator, g_rng)
        d_vars = self.discriminator.init(d_rng, jnp.zeros((1, self.seq_len), jnp.int32))
        return {"params": {"generator": g_vars["params"], "discriminator": d_vars["params"]}}

    def _sample(self, g_params: Any, rng: jax.Array, batch_size: int) -> jax.Array:
        return nets.sample(self.generator, g_params, jax.random.split(rng, batch_size), self.seq_len)

    def _d_logits(self, d_params: Any, tokens_BT: jax.Array, rng: jax.Array | None = None) -> jax.Array:
        train = rng is not None
        rngs = {"dropout": rng} if train else None
        return self.discriminator.apply({"params": d_params}, tokens_BT, train=train, rngs=rngs)

    @staticmethod
    def _metrics(phase: int, **values: jax.Array) -> dict[str, jax.Array]:
        zero = jnp.zeros((), jnp.float32)
        names = ("mle_loss", "d_loss", "pg_loss", "reward", "grad_norm")  # grad_norm: for the NaN guard
        named = {name: values.get(name, zero) for name in names}
        return {"phase": jnp.float32(phase), **named}

    def _mle_step(self, state: TrainState, real_BT: jax.Array, rng: jax.Array) -> tuple[TrainState, Any]:
        del rng

        def loss_fn(g_params: Any) -> jax.Array:
            return nets.token_nll(self.generator, g_params, real_BT).mean()

        loss, grads = jax.value_and_grad(loss_fn)(state.params["generator"])
        metrics = self._metrics(0, mle_loss=loss, grad_norm=optax.tree.norm(grads))
        return state.apply_gradients({"generator": grads}), metrics

    def _discriminator_step(
        self, state: TrainState, real_BT: jax.Array, rng: jax.Array
    ) -> tuple[TrainState, Any]:
        sample_rng, dropout_rng = jax.random.split(rng)
        B = real_BT.shape[0]
        fake_BT = self._sample(state.params["generator"], sample_rng, B)
        tokens_NT = jnp.concatenate([real_BT, fake_BT])
        labels_N = jnp.concatenate([jnp.ones(B), jnp.zeros(B)])

        def loss_fn(d_params: Any) -> jax.Array:
            logits_N = self._d_logits(d_params, tokens_NT, dropout_rng)
            return optax.sigmoid_binary_cross_entropy(logits_N, labels_N).mean()

        loss, grads = jax.value_and_grad(loss_fn)(state.params["discriminator"])
        metrics = self._metrics(1, d_loss=loss, grad_norm=optax.tree.norm(grads))
        return state.apply_gradients({"discriminator": grads}), metrics

    def _policy_gradient_step(
        self, state: TrainState, real_BT: jax.Array, rng: jax.Array
    ) -> tuple[TrainState, Any]:
        sample_rng, rollout_rng = jax.random.split(rng)
        g_params, d_params = state.params["generator"], state.params["discriminator"]
        fake_BT = self._sample(g_params, sample_rng, real_BT.shape[0])
        rewards_BT = nets.rollout_rewards(
            self.generator,
            g_params,
            fake_BT,
            self.config.pg.num_rollouts,
            rollout_rng,
            lambda tokens_NT: jax.nn.sigmoid(self._d_logits(d_params, tokens_NT)),
        )
        loss, grads = jax.value_and_grad(
            lambda g: nets.policy_gradient_loss(self.generator, g, fake_BT, rewards_BT)
        )(g_params)
        state = state.apply_gradients(
            {"policy_gradient" if self.separate_pg_optimizer else "generator": grads}
        )
        return state, self._metrics(
            2, pg_loss=loss, reward=rewards_BT.mean(), grad_norm=optax.tree.norm(grads)
        )

    def phase(self, step: jax.Array) -> jax.Array:
        """Which of `PHASES` the step at `step` (0-based) runs."""
        p = self.config.phases
        if not p.adversarial:
            return jnp.zeros_like(step)
        adversarial_step = step - p.mle_steps - p.d_pretrain_steps
        in_round = jnp.where(adversarial_step % (1 + p.d_steps) == 0, 2, 1)
        return jnp.where(step < p.mle_steps, 0, jnp.where(adversarial_step < 0, 1, in_round))

    def train_step(
        self, state: TrainState, batch: dict[str, jax.Array]
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        rng = jax.random.fold_in(state.rng, state.step)
        if not self.config.phases.adversarial:  # the MLE-only baseline compiles no adversarial branch
            return self._mle_step(state, batch["tokens"], rng)
        branches = (self._mle_step, self._discriminator_step, self._policy_gradient_step)
        return jax.lax.switch(self.phase(state.step), branches, state, batch["tokens"], rng)

    def eval_step(self, state: TrainState, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        real_BT, weight_B = batch["tokens"], batch["weight"]
        g_params, d_params = state.params["generator"], state.params["discriminator"]
        keys_B = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(_EVAL_SEED), i))(batch["index"])
        fake_BT = nets.sample(self.generator, g_params, keys_B, self.seq_len)
        sums = {
            "nll": jnp.sum(nets.token_nll(self.generator, g_params, real_BT).mean(1) * weight_B),
            "d_real_correct": jnp.sum((self._d_logits(d_params, real_BT) > 0) * weight_B),
            "d_fake_correct": jnp.sum((self._d_logits(d_params, fake_BT) < 0) * weight_B),
            "weight": jnp.sum(weight_B),
        }
        if self.config.data.source == "oracle":
            for name, tokens_BT in (("oracle_nll", fake_BT), ("oracle_nll_real", real_BT)):
                nll_B = nets.token_nll(self.oracle, self.oracle_params, tokens_BT).mean(1)
                sums[name] = jnp.sum(nll_B * weight_B)
        return sums

    def summarize_eval(self, totals: dict[str, np.ndarray]) -> dict[str, float]:
        n = float(totals["weight"])
        result = {
            name: float(totals[name] / n)
            for name in ("nll", "oracle_nll", "oracle_nll_real")
            if name in totals
        }
        result["d_real_accuracy"] = float(totals["d_real_correct"] / n)
        result["d_fake_accuracy"] = float(totals["d_fake_correct"] / n)
        return result

    def count_items(self, batch: dict[str, np.ndarray]) -> int:
        return int(batch["tokens"].shape[0])

    # --- data ------------------------------------------------------------------------------------

    def train_dataset(self) -> grain.IterDataset:
        c = self.config.train
        return in_memory.train_dataset({"tokens": self.splits["train"]}, c.batch_size, c.seed)

    def eval_batches(self, max_batches: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Every evaluation sequence once, with its index: each example's generated sequence is drawn
        from a key folded from it, whatever the batch size or sharding."""
        arrays = {"tokens": self.splits["eval"], "index": np.arange(len(self.splits["eval"]))}
        return in_memory.eval_batches(arrays, self.config.train.batch_size, max_batches)

    # --- sampling --------------------------------------------------------------------------------

    def decode(self, tokens_T: np.ndarray) -> str:
        """Words up to the first padding token (Shakespeare), or the ids (oracle)."""
        if self.tokenizer is None:
            return " ".join(str(t) for t in tokens_T)
        ends = np.flatnonzero(tokens_T == text.PAD_ID)
        return self.tokenizer.decode(tokens_T[: ends[0] if len(ends) else len(tokens_T)])

    def sample(self, state: TrainState, rng: jax.Array, **options: Any) -> list[str]:
        """`num_samples` generated sequences, decoded; the same seed gives the same ones."""
        o = sample_options(self.config.sample, options)
        draw = jax.jit(self._sample, static_argnums=2)
        tokens_BT = np.asarray(draw(state.params["generator"], rng, int(o["num_samples"])))
        return [self.decode(row) for row in tokens_BT]

    def write_samples(self, outputs: list[str], directory: pathlib.Path, name: str) -> list[pathlib.Path]:
        return write_texts(outputs, directory, name, separator="\n")

    def text_metrics(self, state: TrainState, rng: jax.Array, num_samples: int) -> dict[str, float]:
        """BLEU-4 of `num_samples` generated sequences against every evaluation sequence, their
        self-BLEU-4 and distinct-1/2 (`metrics`), on decoded tokens (`<unk>` included)."""
        generated = self.sample(state, rng, num_samples=num_samples)
        return text_metrics(generated, [self.decode(row) for row in self.splits["eval"]])


def text_metrics(generated: list[str], references: list[str]) -> dict[str, float]:
    return {
        "bleu4": metrics.bleu4(generated, references),
        "self_bleu4": metrics.self_bleu4(generated),
        "distinct_1": metrics.distinct_n(generated, 1),
        "distinct_2": metrics.distinct_n(generated, 2),
    }


def make_oracle(config: ml_collections.ConfigDict) -> tuple[nets.LstmGenerator, Any]:
    """The synthetic benchmark's true model and its weights (host arrays), fixed by `data.oracle_seed`."""
    o = config.oracle
    oracle = nets.LstmGenerator(config.data.vocab_size, o.embed_dim, o.hidden_dim, o.init_std)
    params = nets.init_generator(oracle, jax.random.PRNGKey(config.data.oracle_seed))["params"]
    return oracle, jax.device_get(params)


_ORACLE_DATA: dict[tuple, dict[str, np.ndarray]] = {}  # sampling 20,000 sequences takes seconds: once


def oracle_splits(config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
    """`num_train` + `num_eval` sequences sampled from the oracle; the same seed, the same data."""
    d, o = config.data, config.oracle
    key = (
        d.vocab_size,
        o.embed_dim,
        o.hidden_dim,
        o.init_std,
        d.oracle_seed,
        d.num_train,
        d.num_eval,
        d.seq_len,
    )
    if key not in _ORACLE_DATA:
        oracle, params = make_oracle(config)
        keys_N = jax.random.split(
            jax.random.fold_in(jax.random.PRNGKey(d.oracle_seed), 1), d.num_train + d.num_eval
        )
        tokens_NT = np.asarray(jax.jit(nets.sample, static_argnums=(0, 3))(oracle, params, keys_N, d.seq_len))
        tokens_NT.flags.writeable = False  # shared by every caller
        _ORACLE_DATA[key] = {"train": tokens_NT[: d.num_train], "eval": tokens_NT[d.num_train :]}
    return _ORACLE_DATA[key]


def build(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> SeqGan:
    """The system for `config`; for Shakespeare the word tokenizer is fitted on the training lines once
    and kept in `workdir`."""
    d = config.data
    if d.source == "oracle":
        return SeqGan(config, None, oracle_splits(config))
    if d.source != "shakespeare":
        raise UserError(f"unknown config.data.source {d.source!r}; use oracle or shakespeare")
    lines = {
        split: sequences.shakespeare_lines(split, d.min_tokens, d.seq_len, d.dir or None)
        for split in ("train", "validation")
    }
    tokenizer = text.workdir_tokenizer(
        workdir, "word", lambda: text.WordTokenizer.fit("\n".join(lines["train"]), d.vocab_size)
    )
    splits = {
        "train": sequences.encode_padded(tokenizer, lines["train"], d.seq_len),
        "eval": sequences.encode_padded(tokenizer, lines["validation"], d.seq_len),
    }
    return SeqGan(config, tokenizer, splits)
