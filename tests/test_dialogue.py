"""The chitchat data set and the dialogue_chitchat system: turns and splits from the real package file,
the response-only loss, the no-context ablation, learning, sharding, resume, replies and `aigc-jax chat`.

The smoke preset reads a 2,000-pair slice of the embedded `chitchat` set, built once per machine into
the shared cache (~1 minute the first time)."""

import io
import os
import shutil
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax import cli
from aigc_jax.data import catalog
from aigc_jax.data.builders import chitchat
from aigc_jax.data.sources import fetch_pypi_sdist
from aigc_jax.errors import UserError
from aigc_jax.systems import dialogue_chitchat
from aigc_jax.train import config as config_lib
from aigc_jax.train import loop
from aigc_jax.train import mesh as mesh_lib
from aigc_jax.train.state import create_train_state, param_count
from tests.helpers import host, run_steps, single_device_mesh

SPLIT_SIZES = {"train": 118_376, "validation": 6_540, "test": 6_632}


def _smoke(workdir, **overrides):
    config = config_lib.apply_overrides(dialogue_chitchat.get_config("smoke"), overrides)
    return dialogue_chitchat.build(config, workdir)


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    return _smoke(tmp_path_factory.mktemp("dialogue"))


@pytest.fixture(scope="module")
def conversations():
    return chitchat.load_conversations(fetch_pypi_sdist(chitchat.PYPI_NAME, chitchat.PYPI_VERSION))


# --- data ----------------------------------------------------------------------------------------


def test_turns_join_one_senders_consecutive_messages():
    groups = [
        [{"text": "hi", "sender": "a"}, {"text": " how  are\tyou? ", "sender": "a"}],
        [{"text": "  ", "sender": "b"}],  # empty: dropped, so a's next group continues a's turn
        [{"text": "still me", "sender": "a"}],
        [{"text": "fine", "sender": "b"}],
    ]
    assert chitchat.turns_of(groups) == ["hi how are you? still me", "fine"]
    examples = list(chitchat.pairs([f"t{i}" for i in range(11)]))
    assert [turn for turn, _, _ in examples] == list(range(1, 11))
    assert examples[-1] == (10, [f"t{i}" for i in range(2, 10)], "t10")  # at most 8 context turns


def test_builder_builds_from_the_package_and_splits_by_conversation(conversations):
    assert sum(len(g) for c in conversations.values() for g in c["messages"]) == chitchat.NUM_MESSAGES
    ids = chitchat.split_conversations(list(conversations))
    assert {k: len(v) for k, v in ids.items()} == {"train": 6451, "validation": 359, "test": 358}
    assert set().union(*ids.values()) == set(conversations)
    turns = {i: chitchat.turns_of(c["messages"]) for i, c in conversations.items()}
    expected = {split: sum(max(len(turns[i]) - 1, 0) for i in split_ids) for split, split_ids in ids.items()}
    assert expected == SPLIT_SIZES

    catalog.prepare("chitchat")
    for split, split_ids in ids.items():
        source = catalog.data_source("chitchat", split)
        assert len(source) == SPLIT_SIZES[split]
        # every 40th pair (all splits, a few thousand reads) comes from a conversation of its own split
        seen = {bytes(source[i]["conversation"]).decode() for i in range(0, len(source), 40)}
        assert seen <= set(split_ids)
    record = catalog.records("chitchat", "validation[:1]")[0]
    conversation_turns = turns[record["conversation"]]
    assert record["response"] == conversation_turns[record["turn"]]
    assert (
        record["context"].split("\n") == conversation_turns[: record["turn"]][-chitchat.MAX_CONTEXT_TURNS :]
    )


# --- model and loss ------------------------------------------------------------------------------


def test_smoke_model_shapes_and_parameter_count(system):
    assert system.tokenizer.vocab_size == 300 and system.pad_id == 300  # padding: one id past the BPE
    variables = jax.eval_shape(system.init_variables, jax.random.PRNGKey(0))
    # GPT with vocabulary 301, width 32, 48 positions, 1 block (see test_gpt for the block's count)
    assert param_count(nn.unbox(variables)["params"]) == 301 * 32 + 48 * 32 + 12_704 + 64 == 23_936
    logits = jax.eval_shape(system.model.apply, variables, jnp.zeros((3, 48), jnp.int32))
    assert logits.shape == (3, 48, 301)


def test_rows_put_the_response_at_a_fixed_place_and_the_context_left_padded(system):
    examples, C = system.examples("validation[:8]"), system.context_len
    records = catalog.records("chitchat", "validation[:8]")
    for row, length, record in zip(examples["tokens"], examples["response_length"], records, strict=True):
        response = row[C : C + length]
        assert response[-1] == system.eot_id and np.all(row[C + length :] == system.pad_id)
        assert record["response"].startswith(system.tokenizer.decode(response[:-1]))
        context = row[:C][row[:C] != system.pad_id]
        assert context[-1] == system.eot_id and record["context"].endswith(
            system.tokenizer.decode(context[:-1])
        )


def _scored_positions(system, examples, include_context):
    """[B, T] bools: which positions' predictions enter the training loss (their gradient is nonzero)."""
    tokens, lengths = jnp.asarray(examples["tokens"]), jnp.asarray(examples["response_length"])
    logits = jax.random.normal(jax.random.PRNGKey(0), (*tokens.shape, system.model.vocab_size))

    def loss(x):
        weights = dialogue_chitchat.target_weights(
            tokens, lengths, system.context_len, system.pad_id, include_context=include_context
        )
        return dialogue_chitchat.next_token_nll(x, tokens, weights)

    grad = jax.jit(jax.grad(lambda x: loss(x)[0]))(logits)
    scored = np.abs(np.asarray(grad)).sum(-1) > 0
    assert loss(logits)[1] == scored.sum()
    return scored


def test_the_response_loss_reads_only_response_tokens(system):
    examples, C = system.examples("validation[:4]"), system.context_len
    scored = _scored_positions(system, examples, include_context=False)
    for row, length in zip(scored, examples["response_length"], strict=True):
        assert np.flatnonzero(row).tolist() == list(range(C - 1, C - 1 + length))


def test_the_context_loss_adds_every_context_token_but_never_padding(system):
    examples, C = system.examples("validation[:4]"), system.context_len
    scored = _scored_positions(system, examples, include_context=True)
    for row, tokens, length in zip(scored, examples["tokens"], examples["response_length"], strict=True):
        first = int(np.argmax(tokens != system.pad_id))  # the first context token is predicted by padding
        assert np.flatnonzero(row).tolist() == list(range(first, C - 1 + length))


def test_the_shuffled_context_probe_moves_contexts_between_conversations(tmp_path, system):
    (tmp_path / "tokenizer.json").write_text(system.tokenizer.to_json())
    probe = _smoke(tmp_path, **{"data.eval_context": "shuffled"})
    own, shuffled = system._eval_examples, probe._eval_examples
    C = system.context_len
    np.testing.assert_array_equal(own["tokens"][:, C:], shuffled["tokens"][:, C:])
    np.testing.assert_array_equal(np.roll(own["tokens"][:, :C], 32, axis=0), shuffled["tokens"][:, :C])
    with pytest.raises(UserError, match="eval_context"):
        _smoke(tmp_path, **{"data.eval_context": "random"})


def test_without_context_the_same_responses_follow_only_padding(tmp_path, system):
    (tmp_path / "tokenizer.json").write_text(system.tokenizer.to_json())  # the same tokens, surely
    no_context = _smoke(tmp_path, **{"data.use_context": "false"})
    a, b = system.examples("validation[:16]"), no_context.examples("validation[:16]")
    C = system.context_len
    np.testing.assert_array_equal(a["tokens"][:, C:], b["tokens"][:, C:])  # the same scored tokens
    np.testing.assert_array_equal(a["response_length"], b["response_length"])
    assert np.all(b["tokens"][:, : C - 1] == system.pad_id) and np.all(b["tokens"][:, C - 1] == system.eot_id)
    assert np.any(a["tokens"][:, : C - 1] != system.pad_id)


# --- training ------------------------------------------------------------------------------------


def test_a_few_steps_overfit_one_batch(tmp_path):
    system = _smoke(
        tmp_path, **{"optim.learning_rate": "1e-2", "optim.warmup_steps": "1", "optim.schedule": "constant"}
    )
    batch = next(iter(system.train_dataset()))
    _, history = run_steps(system, single_device_mesh(), 40, batch)
    assert history[-1]["loss"] < 0.5 * history[0]["loss"], [h["loss"] for h in history]


def test_sharded_step_equals_single_device_step(system):
    batch = next(iter(system.train_dataset()))
    single, single_history = run_steps(system, single_device_mesh(), 2, batch)
    sharded, history = run_steps(system, mesh_lib.make_mesh((2, 2, 2)), 2, batch)
    assert len(sharded.params["h_0"]["mlp"]["fc"]["kernel"].sharding.device_set) == 8
    np.testing.assert_allclose(history[-1]["loss"], single_history[-1]["loss"], rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5), host(sharded.params), host(single.params)
    )


# --- replies -------------------------------------------------------------------------------------


def test_a_beam_of_one_replies_as_greedy_decoding_does(system):
    mesh = single_device_mesh()
    conversations = [["hi there", "hello! how are you?"], ["what do you do for fun?"]]  # ragged contexts
    with loop.activate(mesh):
        state, _ = create_train_state(system.init_variables, system.tx, mesh, jax.random.PRNGKey(1))
        beam = system.reply(state, jax.random.PRNGKey(0), conversations, beam_size=1)
        greedy = system.reply(state, jax.random.PRNGKey(0), conversations, temperature=0.0)
    assert beam == greedy and len(beam) == 2 and all("\n" not in reply for reply in beam)


RUN = {"train.num_steps": "12", "train.checkpoint_every": "6", "train.eval_every": "0"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("chat") / "dialogue"
    args = ["train", "dialogue_chitchat", "--preset", "smoke", "--workdir", str(workdir)]
    assert cli.main(args + [f"--config.{key}={value}" for key, value in RUN.items()]) == 0
    return workdir


def test_resume_equals_an_uninterrupted_run(trained, tmp_path):
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(trained, resumed_dir)  # an interrupted run: the workdir as it stood after step 6
    shutil.rmtree(resumed_dir / "checkpoints" / "12")
    mesh = mesh_lib.make_mesh((-1, 1, 1))
    loop.fit(_smoke(resumed_dir, **RUN), resumed_dir, mesh)
    with loop.activate(mesh):
        full = host(loop.restore_state(_smoke(trained, **RUN), trained, mesh))
        resumed = host(loop.restore_state(_smoke(resumed_dir, **RUN), resumed_dir, mesh))
    assert int(resumed.step) == 12
    jax.tree.map(np.testing.assert_array_equal, resumed.params, full.params)
    jax.tree.map(np.testing.assert_array_equal, resumed.opt_state, full.opt_state)


def test_chat_answers_each_piped_line_until_quit(trained):
    env = {**os.environ, "XLA_FLAGS": ""}  # one device is plenty for one conversation
    result = subprocess.run(
        [sys.executable, "-m", "aigc_jax.cli", "chat", "--workdir", str(trained), "--beam", "2"],
        input="hello!\n\nhow was your weekend?\n/quit\nnot read\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2  # one reply per non-empty line before /quit
    assert "you>" not in result.stdout + result.stderr  # no prompts when stdin is not a terminal


def test_chat_sampling_is_deterministic_for_a_seed(trained, monkeypatch, capsys):
    def chat(seed):
        monkeypatch.setattr(sys, "stdin", io.StringIO("hi\nwhat's new?\n"))
        assert cli.main(["chat", "--workdir", str(trained), "--seed", str(seed)]) == 0
        return capsys.readouterr().out

    first = chat(0)
    assert chat(0) == first != chat(1) and len(first.splitlines()) == 2


def test_chat_needs_a_dialogue_workdir(tmp_path, capsys):
    assert cli.main(["chat", "--workdir", str(tmp_path)]) == 2
    assert "not a training workdir" in capsys.readouterr().err
