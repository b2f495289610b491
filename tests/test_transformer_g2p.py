"""Greedy and beam search (aigc_jax/decoding.py), the encoder-decoder transformer, the cmudict_g2p data set
and the transformer_g2p system."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax import decoding, metrics
from aigc_jax.data import catalog, pipeline
from aigc_jax.data.builders import cmudict_g2p
from aigc_jax.errors import UserError
from aigc_jax.models.gpt import GPT
from aigc_jax.models.transformer import Transformer
from aigc_jax.systems import transformer_g2p
from aigc_jax.train import config as config_lib
from aigc_jax.train import loop
from aigc_jax.train import mesh as mesh_lib
from aigc_jax.train.state import create_train_state, param_count
from tests.helpers import host, run_steps, single_device_mesh

# --- decoding -------------------------------------------------------------------------------------


def _gpt_step_fn(model, params):
    def step_fn(tokens_N1, cache):
        logits_N1V, updated = model.apply({"params": params, "cache": cache}, tokens_N1, mutable=["cache"])
        return logits_N1V[:, -1], updated["cache"]

    return step_fn


GPT_DECODER = GPT(vocab_size=13, num_layers=2, num_heads=2, embed_dim=16, max_len=24, decode=True)


def _gpt_prefill(seed=0):
    """A tiny random GPT prefilled with two prompts: its parameters, cache and first logits."""
    variables = nn.unbox(GPT_DECODER.init(jax.random.PRNGKey(seed), jnp.zeros((2, 24), jnp.int32)))
    prompt_BP = jnp.array([[1, 2, 3], [4, 5, 6]])
    logits_BPV, updated = GPT_DECODER.apply(variables, prompt_BP, mutable=["cache"])
    return variables["params"], updated["cache"], logits_BPV[:, -1]


@jax.jit
def _greedy_and_beam_of_one(params, cache, first_BV):
    step_fn = _gpt_step_fn(GPT_DECODER, params)
    greedy_BN = decoding.greedy_search(step_fn, cache, first_BV, max_new=15, eos_id=0)
    beam_BKN, _ = decoding.beam_search(step_fn, cache, first_BV, beam_size=1, max_new=15, eos_id=0)
    return greedy_BN, beam_BKN[:, 0]


def test_beam_of_one_is_greedy_search():
    for seed in range(3):
        greedy_BN, beam_BN = _greedy_and_beam_of_one(*_gpt_prefill(seed))
        np.testing.assert_array_equal(greedy_BN, beam_BN)


def test_greedy_search_pads_with_eos_after_the_end():
    params, cache, first_BV = _gpt_prefill()
    eos = int(jnp.argmax(first_BV[0]))  # row 0 ends at once
    tokens_BN = decoding.greedy_search(
        _gpt_step_fn(GPT_DECODER, params), cache, first_BV, max_new=6, eos_id=eos
    )
    assert (tokens_BN[0] == eos).all() and tokens_BN.shape == (2, 6)


def _second_order_markov(V=4, B=2, seed=0):
    """Logits that depend on the last two tokens: the previous one lives in the per-row cache, so the
    search must reorder the cache with its beams to score the hypotheses right."""
    table_BVVV = jax.random.normal(jax.random.PRNGKey(seed), (B, V, V, V)) * 2.0

    def step_fn(tokens_N1, cache):
        row_N, previous_N = cache
        return table_BVVV[row_N, previous_N, tokens_N1[:, 0]], (row_N, tokens_N1[:, 0])

    start = (jnp.arange(B), jnp.full(B, 2))  # the context so far ends ..., 1, 2
    first_BV = table_BVVV[jnp.arange(B), 1, 2]
    return table_BVVV, step_fn, start, first_BV


def _exhaustive_best(table_VVV, first_V, max_new, eos_id, alpha):
    best, best_score = None, -np.inf
    for seq in itertools.product(range(table_VVV.shape[0]), repeat=max_new):
        log_p, previous, logits, length = 0.0, 2, first_V, max_new
        for i, token in enumerate(seq):
            log_p += float(jax.nn.log_softmax(logits)[token])
            if token == eos_id:
                length = i + 1
                break
            logits, previous = table_VVV[previous, token], token
        if any(t != eos_id for t in seq[length:]):
            continue  # the same hypothesis as its EOS-padded twin
        score = log_p / ((5 + length) / 6) ** alpha
        if score > best_score:
            best, best_score = seq, score
    return best, best_score


def test_a_beam_wide_enough_finds_the_best_sequence():
    table, step_fn, start, first_BV = _second_order_markov()
    tokens_BKN, scores_BK = decoding.beam_search(
        step_fn, start, first_BV, beam_size=64, max_new=4, eos_id=0, length_alpha=0.6
    )
    assert (np.diff(np.asarray(scores_BK), axis=1) <= 1e-6).all()  # best beam first
    for b in range(2):
        seq, score = _exhaustive_best(np.asarray(table[b]), np.asarray(first_BV[b]), 4, 0, 0.6)
        np.testing.assert_array_equal(tokens_BKN[b, 0], seq)
        np.testing.assert_allclose(scores_BK[b, 0], score, rtol=1e-5)


# --- the encoder-decoder transformer --------------------------------------------------------------

TINY = dict(source_vocab_size=28, target_vocab_size=42, num_layers=2, num_heads=2, embed_dim=32, max_len=16)


def _tiny_params(model, seed=0):
    tokens = jnp.ones((1, 8), jnp.int32)
    return nn.unbox(model.init(jax.random.PRNGKey(seed), tokens, tokens)["params"])


def _source_and_target():
    source_BS = jnp.array([[3, 4, 5, 0, 0, 0], [7, 8, 9, 10, 11, 12]])
    target_BT = jnp.array([[1, 5, 6, 7, 0], [1, 8, 9, 10, 11]])
    return source_BS, target_BT


def test_tiny_transformer_shapes_and_parameter_count():
    model = Transformer(**TINY)
    params = _tiny_params(model)
    D = 32
    attention = 4 * D * D + 4 * D  # q, fused kv and output projections with biases (GPT's fused qkv: same)
    mlp = 8 * D * D + 5 * D
    encoder = 28 * D + 16 * D + 2 * (4 * D + attention + mlp) + 2 * D  # embeddings, 2 blocks, final LN
    decoder = 42 * D + 16 * D + 2 * (6 * D + 2 * attention + mlp) + 2 * D  # + cross-attention, 3rd LN
    assert param_count(params) == encoder + decoder == 62_784
    source_BS, target_BT = _source_and_target()
    logits = model.apply({"params": params}, source_BS, target_BT)
    assert logits.shape == (2, 5, 42) and logits.dtype == jnp.float32


def test_padding_never_changes_a_prediction():
    model = Transformer(**TINY)
    params = _tiny_params(model)
    source_BS, target_BT = _source_and_target()
    logits = model.apply({"params": params}, source_BS, target_BT)
    longer = model.apply(
        {"params": params}, jnp.pad(source_BS, ((0, 0), (0, 4))), jnp.pad(target_BT, ((0, 0), (0, 3)))
    )
    np.testing.assert_allclose(longer[:, :5], logits, atol=1e-5)
    # and the source really is read: changing a real letter changes the logits
    changed = model.apply({"params": params}, source_BS.at[0, 1].set(20), target_BT)
    assert not np.allclose(changed[0], logits[0], atol=1e-4)


def test_kv_cache_decoding_equals_the_full_forward_pass():
    model = Transformer(**TINY)
    params = _tiny_params(model)
    source_BS, target_BT = _source_and_target()
    full = model.apply({"params": params}, source_BS, target_BT)
    decoder = model.clone(decode=True)
    cache = decoder.init(jax.random.PRNGKey(0), source_BS, jnp.zeros((2, 16), jnp.int32))["cache"]
    memory = model.apply({"params": params}, source_BS, method="encode")
    logits, variables = decoder.apply(
        {"params": params, "cache": cache},
        target_BT[:, :2],
        memory,
        source_BS != 0,
        method="decoder_logits",
        mutable=["cache"],
    )
    steps = [logits]
    for t in range(2, 5):  # later calls pass no source: it rides in the cache
        logits, variables = decoder.apply(
            {"params": params, "cache": variables["cache"]},
            target_BT[:, t : t + 1],
            method="decoder_logits",
            mutable=["cache"],
        )
        steps.append(logits)
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, atol=2e-5)


# --- the system ------------------------------------------------------------------------------------

ARPABET = (
    "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W Y Z ZH"
)
WORDS = [
    ("cat", ("K", "AE", "T")),
    ("dog", ("D", "AO", "G")),
    ("phone", ("F", "OW", "N")),
    ("fish", ("F", "IH", "SH")),
    ("the", ("DH", "AH")),
    ("jumped", ("JH", "AH", "M", "P", "T")),
    ("queue", ("K", "Y", "UW")),
    ("thought", ("TH", "AO", "T")),
]


def _system(**overrides):
    config = config_lib.apply_overrides(transformer_g2p.get_config("smoke"), overrides)
    return transformer_g2p.TransformerG2p(config, transformer_g2p.Phonemes(ARPABET.split()))


def _word_batch(system, length=8):
    arrays = transformer_g2p.pair_arrays(WORDS * 4, system.phonemes, length)  # 32 rows: 4 per device
    return {key: np.asarray(value) for key, value in arrays.items()}


def _state(system, seed=0):
    return create_train_state(
        system.init_variables, system.tx, single_device_mesh(), jax.random.PRNGKey(seed)
    )[0]


def test_cmudict_preset_parameter_count():
    system = _system()  # smoke: 1 layer a side, 32 wide, 2 heads; 28 letters in, 39 + 3 phoneme ids out
    D = 32
    encoder = 28 * D + 32 * D + (4 * D + 4 * D * D + 4 * D + 8 * D * D + 5 * D) + 2 * D
    decoder = 42 * D + 32 * D + (6 * D + 2 * (4 * D * D + 4 * D) + 8 * D * D + 5 * D) + 2 * D
    shapes = jax.eval_shape(system.init_variables, jax.random.PRNGKey(0))  # counted without allocating
    assert param_count(nn.unbox(shapes)["params"]) == encoder + decoder == 34_112


def test_a_few_steps_overfit_one_batch():
    system = _system(
        **{
            "optim.learning_rate": "1e-2",
            "optim.warmup_steps": "1",
            "optim.schedule": "constant",
            "model.dropout": "0.0",
            "train.label_smoothing": "0.0",
        }
    )
    _, history = run_steps(system, single_device_mesh(), 60, _word_batch(system))
    assert history[-1]["loss"] < 0.2 * history[0]["loss"], [h["loss"] for h in history]
    assert history[-1]["token_accuracy"] == 1.0


def test_sharded_step_equals_single_device_step():
    system = _system()
    batch = _word_batch(system)
    single, single_history = run_steps(system, single_device_mesh(), 2, batch)
    sharded, history = run_steps(system, mesh_lib.make_mesh((8, 1, 1)), 2, batch)
    np.testing.assert_allclose(history[-1]["loss"], single_history[-1]["loss"], rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), host(sharded.params), host(single.params)
    )


def test_sharded_eval_with_beam_search_equals_single_device():
    system = _system(**{"decoding.beam_size": "2"})
    batch = transformer_g2p.eval_arrays(
        [(word, [phones, phones[:-1]]) for word, phones in WORDS] * 2, system.phonemes, 32
    )
    batch = {key: np.asarray(value) for key, value in batch.items()} | {"weight": np.ones(16, np.float32)}
    sums = []
    for mesh in (single_device_mesh(), mesh_lib.make_mesh((8, 1, 1))):
        with loop.activate(mesh):
            state, shardings = create_train_state(
                system.init_variables, system.tx, mesh, jax.random.PRNGKey(0)
            )
            _, eval_step = loop.jit_steps(system, shardings, mesh)
            sums.append(host(eval_step(state, mesh_lib.shard_batch(batch, mesh))))
    for name in sums[0]:
        np.testing.assert_allclose(sums[1][name], sums[0][name], rtol=1e-5)
    assert sums[0]["words"] == 16 and 0 <= sums[0]["word_errors"] <= 16


def _recompute_greedy(system, params, source_BS, steps):
    """Greedy transcription re-running the whole decoder on the output so far at every step (one fixed
    buffer: causal attention keeps the slots not yet written from leaking into earlier ones)."""

    @jax.jit
    def run(params, source_BS):
        buffer_BT = jnp.zeros((source_BS.shape[0], steps + 1), jnp.int32).at[:, 0].set(transformer_g2p.BOS_ID)

        def body(t, buffer_BT):
            logits_BTV = system.model.apply({"params": params}, source_BS, buffer_BT)
            return buffer_BT.at[:, t + 1].set(jnp.argmax(logits_BTV[:, t], axis=-1))

        return jax.lax.fori_loop(0, steps, body, buffer_BT)[:, 1:]

    return np.asarray(run(params, source_BS))


def test_cached_greedy_and_beam_of_one_equal_recomputation():
    system = _system()
    state = _state(system, seed=3)  # untrained, so outputs run long and rarely end early
    source_BS = jnp.asarray(_word_batch(system, length=32)["source"][:8])
    greedy_BN = np.asarray(jax.jit(system.transcribe, static_argnums=(2, 3))(state.params, source_BS, 1, 0.6))
    recomputed_BN = _recompute_greedy(system, state.params, source_BS, steps=10)
    for row, expected in zip(greedy_BN, recomputed_BN, strict=True):
        n = int(np.argmax(np.append(expected, transformer_g2p.EOS_ID) == transformer_g2p.EOS_ID))
        np.testing.assert_array_equal(row[:n], expected[:n])  # equal up to the first EOS
        assert (row[n:] == transformer_g2p.EOS_ID).all() or n == len(expected)

    @jax.jit
    def beam_of_one(params, source_BS):
        step_fn, cache, first_BV = system.start_decoding(params, source_BS)
        return decoding.beam_search(step_fn, cache, first_BV, beam_size=1, max_new=31, eos_id=2)[0][:, 0]

    np.testing.assert_array_equal(beam_of_one(state.params, source_BS), greedy_BN)


def test_sample_transcribes_words_and_rejects_bad_ones():
    system = _system()
    state = _state(system)
    out = system.sample(state, jax.random.PRNGKey(0), words="cat, Dog", beam_size=2)
    assert out.words == ("cat", "dog") and len(out.phonemes) == 2
    assert all(p in ARPABET.split() for line in out.phonemes for p in line.split())
    with pytest.raises(UserError, match="letters"):
        system.sample(state, jax.random.PRNGKey(0), words="r2d2")


# --- metrics ---------------------------------------------------------------------------------------


def test_edit_distance_on_hand_made_cases():
    hyp = jnp.array([[1, 2, 3, 0], [1, 2, 3, 4], [5, 5, 0, 0], [7, 8, 9, 9]])
    ref = jnp.array([[1, 3, 0, 0], [2, 3, 4, 0], [1, 1, 1, 0], [7, 8, 9, 9]])
    distance = metrics.edit_distance(hyp, jnp.array([3, 4, 0, 4]), ref, jnp.array([2, 3, 3, 4]))
    # one deletion; one deletion; three insertions into an empty output; equal
    np.testing.assert_array_equal(distance, [1, 1, 3, 0])
    kitten = jnp.array([list(b"kitten")])  # the textbook case: kitten -> sitting is 3 edits
    sitting = jnp.array([list(b"sitting")])
    assert int(metrics.edit_distance(kitten, jnp.array([6]), sitting, jnp.array([7]))[0]) == 3


def test_wer_and_per_score_against_the_closest_pronunciation():
    # word 0 matches its second pronunciation exactly; word 1 is one substitution from its only one;
    # the third row is batch padding (weight 0)
    hyp = jnp.array([[4, 5, 6], [4, 5, 6], [9, 9, 9]])
    refs = jnp.array([[[4, 5, 7], [4, 5, 6]], [[4, 8, 6], [0, 0, 0]], [[1, 1, 1], [0, 0, 0]]])
    sums = metrics.closest_reference_errors(
        hyp, jnp.array([3, 3, 3]), refs, jnp.array([[3, 3], [3, 0], [3, 0]]), jnp.array([1.0, 1.0, 0.0])
    )
    assert metrics.wer(sums["word_errors"], sums["words"]) == 0.5
    assert metrics.per(sums["edits"], sums["reference_tokens"]) == pytest.approx(1 / 6)


# --- data ------------------------------------------------------------------------------------------


def test_dictionary_lines_are_parsed_with_alternates_and_comments():
    lines = ["aalborg AO1 L B AO0 R G # place, danish", "read R EH1 D", "read(2) R IY1 D", "a-1 EY1", ";;; x"]
    assert cmudict_g2p.parse_dictionary(lines) == {
        "aalborg": ["AO1 L B AO0 R G"],
        "read": ["R EH1 D", "R IY1 D"],
    }


def test_builder_builds_from_the_real_dictionary_split_by_word():
    splits = {split: catalog.records("cmudict_g2p", split) for split in ("train", "validation", "test")}
    assert {k: len(v) for k, v in splits.items()} == {"train": 112_434, "validation": 6_246, "test": 6_246}
    words = {split: {r["word"] for r in records} for split, records in splits.items()}
    assert not (
        words["train"] & words["validation"]
        or words["train"] & words["test"]
        or words["validation"] & words["test"]
    )
    pronunciations = {r["word"]: r["pronunciations"].split("\n") for rs in splits.values() for r in rs}
    assert sum(len(p) for p in pronunciations.values()) == 133_973  # every alternate kept
    assert pronunciations["read"] == ["R EH1 D", "R IY1 D"]
    assert pronunciations["aalborg"][0] == "AO1 L B AO0 R G"  # its "# place, danish" comment is gone
    assert not any("#" in p for prons in pronunciations.values() for p in prons)


def test_bucketed_stream_resumes_on_the_exact_next_batch():
    lengths = np.arange(40) % 16 + 1
    arrays = {"x": np.arange(40)[:, None] * np.ones((1, 16), np.int32)}
    iterator = iter(pipeline.bucketed_train_dataset(arrays, lengths, (8, 16), 4, seed=1))
    for _ in range(13):  # into the second epoch (9 batches each)
        next(iterator)
    state = iterator.get_state()
    expected = [next(iterator)["x"] for _ in range(3)]
    resumed = iter(pipeline.bucketed_train_dataset(arrays, lengths, (8, 16), 4, seed=1))
    resumed.set_state(state)
    for batch in expected:
        np.testing.assert_array_equal(next(resumed)["x"], batch)


def test_length_buckets_cut_batches_and_cover_every_row_once_an_epoch():
    lengths = np.array([3, 8, 5, 12, 2, 7, 9, 16, 11, 4, 6, 15] * 4)
    arrays = {"x": np.arange(len(lengths))[:, None] * np.ones((1, 16), np.int64)}
    to_batch = pipeline.LengthBuckets(arrays, lengths, (8, 12, 16), 4, seed=0)
    assert to_batch.batches_per_epoch == 12  # 28 short rows -> 7 batches, 12 middle -> 3, 8 long -> 2
    seen = []
    for position in range(12):
        batch = to_batch(position, None)["x"]
        rows = batch[:, 0]
        assert batch.shape[1] >= lengths[rows].max() and batch.shape[1] in (8, 12, 16)
        seen += rows.tolist()
    assert sorted(seen) == list(range(len(lengths)))
    assert [to_batch(12 + k, None)["x"][:, 0].tolist() for k in range(3)] != [
        to_batch(k, None)["x"][:, 0].tolist() for k in range(3)
    ]  # the next epoch is dealt afresh


def test_a_damaged_phoneme_inventory_is_a_clear_error(tmp_path):
    (tmp_path / "phonemes.json").write_text('{"symb')
    with pytest.raises(UserError, match="cannot read the phoneme inventory"):
        transformer_g2p.build(transformer_g2p.get_config("smoke"), tmp_path)
