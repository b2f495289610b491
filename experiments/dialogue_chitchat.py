"""Dialogue on chit-chat conversations (source question 17): does the model use the conversation?

Command (2 CPU cores):

    python experiments/dialogue_chitchat.py --preset cpu

Data: the embedded `chitchat` set (PyPI `chitchat-dataset==0.9.0`): 118,376 training pairs of
(previous turns -> next turn) from 6,451 conversations; 6,540 validation pairs from 359 other
conversations. The test split is not read.

What it does: trains `dialogue_chitchat` twice with the same preset, steps, batches and tokenizer —
once reading the last 4 turns before each response (and, by default, learning the language of those
turns too: `data.context_loss`), once on the response alone (`data.use_context=false`, the no-context
ablation) — then scores both on every validation response. Both score the very same tokens (the recipe
checks the counts agree). Because the context run also trains on its context tokens, it sees more
tokens per step; so the recipe also scores the context model with every response placed after another
conversation's context (`data.eval_context=shuffled`): the same model and tokens, only the conversation
is wrong. It then writes 20 example exchanges on validation contexts: the reference turn, a top-p (0.9)
reply and a beam-search (4) reply.

Metric: `val_perplexity` (with context), `val_perplexity_no_context` and
`val_perplexity_shuffled_context`, per BPE token of the validation responses and their end-of-turn marks.

Expected result: `val_perplexity` clearly below `val_perplexity_no_context`, and below
`val_perplexity_shuffled_context` (the model reads its own conversation, not just any text). Anchor:
no published perplexity exists for this corpus; the with/without-history comparison is the standard
probe of whether a dialogue model uses its context (Sankar et al., 2019, "Do Neural Dialog Systems Use the
Conversation History Effectively?"). Here the ablation removes the history entirely.

Writes experiments/results/dialogue_chitchat__<preset>.json. Extra `--config.KEY=VALUE` arguments
override the preset for both runs and are recorded in the command.
"""

import pathlib
import shutil
import sys

import common
import jax

from aigc_jax import results
from aigc_jax.data import catalog
from aigc_jax.errors import exit_code_of
from aigc_jax.systems import dialogue_chitchat
from aigc_jax.train import config as config_lib
from aigc_jax.train import loop
from aigc_jax.train import mesh as mesh_lib

NUM_EXAMPLES = 20
BEAM_SIZE = 4


def example_exchanges(workdir: pathlib.Path) -> list[dict[str, object]]:
    """Replies of the trained model to `NUM_EXAMPLES` validation contexts spread over the split."""
    config = config_lib.load_workdir_config(workdir)
    system = dialogue_chitchat.build(config, workdir)
    records = catalog.records(config.data.name, "validation")
    chosen = [records[i * len(records) // NUM_EXAMPLES] for i in range(NUM_EXAMPLES)]
    contexts = [record["context"].split("\n")[-config.data.context_turns :] for record in chosen]
    mesh = mesh_lib.mesh_for(config)
    with loop.activate(mesh):
        state = loop.restore_state(system, workdir, mesh)
        sampled = system.reply(state, jax.random.PRNGKey(0), contexts, top_p=0.9)
        beamed = system.reply(state, jax.random.PRNGKey(0), contexts, beam_size=BEAM_SIZE)
    return [
        {"context": context, "reference": record["response"], "top_p_0.9": reply, f"beam_{BEAM_SIZE}": beam}
        for context, record, reply, beam in zip(contexts, chosen, sampled, beamed, strict=True)
    ]


def main() -> None:
    args, overrides = common.parse_args(__doc__, dialogue_chitchat.PRESETS, "cpu")
    base = common.workdir_for(dialogue_chitchat, common.run_name(args), args.workdir)
    context_dir, no_context_dir = base / "context", base / "no_context"
    with_context = common.train(dialogue_chitchat, args.preset, context_dir, overrides)
    # the ablation must read the very same tokens, so it takes the first run's tokenizer
    no_context_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(context_dir / "tokenizer.json", no_context_dir / "tokenizer.json")
    without = common.train(
        dialogue_chitchat, args.preset, no_context_dir, [*overrides, "--config.data.use_context=false"]
    )
    shuffled = common.evaluate_split(
        dialogue_chitchat, context_dir, "validation", {"data.eval_context": "shuffled"}
    )
    counts = {with_context.metrics["tokens"], without.metrics["tokens"], shuffled["tokens"]}
    assert len(counts) == 1, f"the evaluations scored different numbers of tokens: {counts}"
    record = results.write(
        common.result_path("dialogue_chitchat", args),
        experiment="dialogue_chitchat",
        system=dialogue_chitchat.NAME,
        preset=args.preset,
        metrics={
            "val_perplexity": with_context.metrics["perplexity"],
            "val_perplexity_no_context": without.metrics["perplexity"],
            "val_perplexity_shuffled_context": shuffled["perplexity"],
            "val_loss": with_context.metrics["loss"],
            "val_loss_no_context": without.metrics["loss"],
            "val_loss_shuffled_context": shuffled["loss"],
            "val_tokens_scored": with_context.metrics["tokens"],
            "train_seconds": with_context.train_seconds,
            "train_seconds_no_context": without.train_seconds,
        },
        target={"val_perplexity_below": ["val_perplexity_no_context", "val_perplexity_shuffled_context"]},
        steps=with_context.steps,
        steps_no_context=without.steps,
        examples=example_exchanges(context_dir),
    )
    m = record["metrics"]
    print(
        f"val_perplexity {m['val_perplexity']:.2f} with context vs {m['val_perplexity_no_context']:.2f} "
        f"without and {m['val_perplexity_shuffled_context']:.2f} with another conversation's context, "
        f"after {with_context.steps} steps each ({record['hardware']})"
    )


if __name__ == "__main__":
    sys.exit(exit_code_of(main))
