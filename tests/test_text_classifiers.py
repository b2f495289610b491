"""The sentence classifiers (fasttext_reviews, textcnn_reviews), their data set and the word tokenizer."""

import collections

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax.data import catalog, text, text_classification
from aigc_jax.data.builders import movie_reviews
from aigc_jax.errors import UserError
from aigc_jax.models import text_classifiers
from aigc_jax.systems import fasttext_reviews, textcnn_reviews
from aigc_jax.train import config as config_lib
from aigc_jax.train import mesh as mesh_lib
from aigc_jax.train.state import param_count
from tests.helpers import host, run_steps, single_device_mesh

SPLITS = ("train", "validation", "test")

# --- word tokenizer --------------------------------------------------------------------------------


def test_word_tokens_split_words_clitics_and_punctuation():
    assert text.word_tokens("The film doesn't work, isn't it?! J.R.R. Tolkien's") == [
        *("the", "film", "does", "n't", "work", ",", "is", "n't", "it", "?", "!"),
        *("j", ".", "r", ".", "r", ".", "tolkien", "'s"),
    ]


def test_word_tokenizer_round_trip_unknown_and_cut_offs(tmp_path):
    corpus = "the cat sat on the mat . the dog sat ."
    tok = text.build_tokenizer("word", corpus)
    assert tok.words[:3] == ["the", ".", "sat"]  # by count, ties alphabetical
    assert tok.vocab_size == len({*corpus.split()}) + 2
    ids = tok.encode("The dog sat on a zebra")
    assert ids.dtype == np.int32 and ids[0] == 2 and list(ids[-2:]) == [text.UNKNOWN_ID] * 2
    assert tok.decode(ids) == "the dog sat on <unk> <unk>"
    assert tok.decode(np.pad(ids, (0, 3))) == tok.decode(ids)  # padding is skipped
    assert len(tok.encode("")) == 0

    assert text.WordTokenizer.fit(corpus, min_count=2).words == ["the", ".", "sat"]
    assert text.build_tokenizer("word", corpus, vocab_size=4).words == ["the", "."]
    with pytest.raises(UserError):
        text.WordTokenizer.fit(corpus, vocab_size=2)

    text.save_tokenizer(tok, tmp_path / "tok.json")
    loaded = text.load_tokenizer(tmp_path / "tok.json")
    assert isinstance(loaded, text.WordTokenizer) and loaded.words == tok.words
    np.testing.assert_array_equal(loaded.encode(corpus), tok.encode(corpus))


# --- data ------------------------------------------------------------------------------------------


def test_builder_builds_the_sdist_sentences_with_counts_splits_and_stratified_folds():
    records = {split: catalog.records("movie_review_sentences", split) for split in SPLITS}
    assert [len(records[s]) for s in SPLITS] == [8454, 1057, 1057]
    everything = [r for s in SPLITS for r in records[s]]
    labels = collections.Counter(int(r["label"]) for r in everything)
    assert labels == {1: movie_reviews.NUM_POSITIVE, 0: movie_reviews.NUM_NEGATIVE} == {1: 5242, 0: 5326}
    assert len({int(r["id"]) for r in everything}) == len(everything)  # no sentence in two splits
    assert all((r["score"] > 0) == (r["label"] == 1) and r["score"] != 0 for r in everything)
    first = records["train"][0]
    assert first["id"] == 1 and first["text"].startswith("The Rock is destined to be the 21st Century's")
    # each sentence is in exactly one fold, and every fold holds ~10% of each class
    per_fold = collections.Counter((int(r["fold"]), int(r["label"])) for r in everything)
    assert sorted({fold for fold, _ in per_fold}) == list(range(10))
    for label, total in labels.items():
        counts = [per_fold[fold, label] for fold in range(10)]
        assert sum(counts) == total and max(counts) - min(counts) <= 1


def test_a_fold_evaluates_on_itself_and_trains_on_the_others():
    config = text_classification.data_config()
    config.fold = 3
    sides = text_classification.partition(config)
    assert {int(r["fold"]) for r in sides["eval"]} == {3}
    assert 3 not in {int(r["fold"]) for r in sides["train"]}
    assert len(sides["train"]) + len(sides["eval"]) == 10_568 and 1050 <= len(sides["eval"]) <= 1060
    config.fold = 10
    with pytest.raises(UserError, match=r"folds 0\.\.9"):
        text_classification.partition(config)


def test_length_batches_hold_every_sentence_and_fit_their_longest():
    lengths = np.random.default_rng(0).integers(1, 40, size=103)
    batches = text_classification.length_batches(lengths, 10, seed=0)
    rows = np.concatenate([r for r, _ in batches])
    assert len(batches) == 11 and set(rows.tolist()) == set(range(103)) and len(rows) == 110
    for r, length in batches:
        multiple = text_classification.LENGTH_MULTIPLE
        assert length % multiple == 0 and length - multiple < lengths[r].max() <= length


# --- models ----------------------------------------------------------------------------------------

V = 1000
TOKENS = jnp.array([[5, 6, 7, 5, 6, 0, 0], [9, 0, 0, 0, 0, 0, 0]], jnp.int32)


def _init(model, tokens=TOKENS):
    return model.init(jax.random.PRNGKey(0), tokens)


def test_parameter_counts_and_shapes():
    cases = [
        (text_classifiers.FastText(2, V), V * 128 + 128 * 2 + 2),
        (text_classifiers.FastText(2, V, 128, bigram_buckets=64), (V + 64) * 128 + 128 * 2 + 2),
        (text_classifiers.NbLinear(2, V, bigram_buckets=64), (V + 64) * 2 + 2),
        # Kim's CNN-rand: embeddings, widths 3/4/5 x 100 maps over 300-d, dense 300 -> 2
        (text_classifiers.TextCNN(2, V), V * 300 + (3 + 4 + 5) * 300 * 100 + 3 * 100 + 300 * 2 + 2),
    ]
    for model, expected in cases:
        variables = jax.eval_shape(lambda model=model: _init(model))
        assert param_count(variables["params"]) == expected, type(model).__name__
        assert jax.eval_shape(model.apply, variables, TOKENS).shape == (2, 2)


def test_bigram_ids_and_binary_features():
    ids, mask = text_classifiers.ngram_ids(TOKENS, V, bigram_buckets=64)
    assert ids.shape == mask.shape == (2, 13)
    assert mask.sum(axis=1).tolist() == [5 + 4, 1 + 0]  # real words, then real neighbouring pairs
    assert bool(jnp.all((ids[:, 7:] >= V) & (ids[:, 7:] < V + 64)))
    assert ids[0, 7] == ids[0, 10]  # "5 6" twice hashes to one id
    first = text_classifiers.first_occurrences(ids, mask)
    assert first[0].tolist() == [1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0]  # repeats and padding are off


def _with_random_nb_ratios(variables):
    ratio = jax.random.normal(jax.random.PRNGKey(3), variables["nb"]["log_count_ratio"].shape)
    weight = jax.random.normal(jax.random.PRNGKey(4), variables["params"]["weight"].shape)
    return {"params": {**variables["params"], "weight": weight}, "nb": {"log_count_ratio": ratio}}


@pytest.mark.parametrize("arch", ["fasttext", "fasttext_bigrams", "nb_linear", "textcnn"])
def test_padding_never_changes_a_prediction(arch):
    model = {
        "fasttext": text_classifiers.FastText(2, V, 16),
        "fasttext_bigrams": text_classifiers.FastText(2, V, 16, bigram_buckets=64),
        "nb_linear": text_classifiers.NbLinear(2, V, bigram_buckets=64),
        "textcnn": text_classifiers.TextCNN(2, V, 16, features=8),
    }[arch]
    variables = _init(model)
    if arch == "nb_linear":
        variables = _with_random_nb_ratios(variables)
    # row 0 of the embedding (padding's id) is a random vector like any other: the masks must hide it
    short = model.apply(variables, TOKENS[:, :5])
    long = model.apply(variables, jnp.pad(TOKENS, ((0, 0), (0, 20))))
    np.testing.assert_allclose(short, long, rtol=1e-5, atol=1e-6)
    assert not np.allclose(short[0], short[1])


# --- systems ---------------------------------------------------------------------------------------


def _smoke(module, tmp_path, **overrides):
    config = config_lib.apply_overrides(module.get_config("smoke"), overrides)
    return module.build(config, tmp_path)


def test_nb_log_count_ratio_by_hand():
    tokens = np.array([[2, 3, 2], [2, 4, 0], [4, 0, 0]], np.int32)  # "a b a", "a c", "c"
    labels = np.array([1, 1, 0])
    r = fasttext_reviews.nb_log_count_ratio(tokens, labels, vocab_size=5, bigram_buckets=0)
    # positive counts (binary) + 1: a 3, b 2, c 2, padding and unknown 1 (sum 9); negative: c 2, others 1 (6)
    np.testing.assert_allclose(r[2], np.log(3 / 9) - np.log(1 / 6), rtol=1e-6)
    np.testing.assert_allclose(r[4], np.log(2 / 9) - np.log(2 / 6), rtol=1e-6)


@pytest.mark.parametrize(
    "module, overrides",
    [
        (fasttext_reviews, {}),
        (fasttext_reviews, {"model.arch": "nb_linear"}),
        (textcnn_reviews, {"model.dropout": "0.0"}),
    ],
    ids=["fasttext", "nbsvm", "textcnn"],
)
def test_a_few_steps_overfit_one_batch(tmp_path, module, overrides):
    overrides = {"optim.schedule": "constant", "optim.learning_rate": "1e-2", **overrides}
    system = _smoke(module, tmp_path, **overrides)
    batch = next(iter(system.train_dataset()))
    _, history = run_steps(system, single_device_mesh(), 25, batch)
    assert history[-1]["loss"] < 0.3 * history[0]["loss"], [h["loss"] for h in history]
    assert history[-1]["accuracy"] == 1.0


@pytest.mark.parametrize("module", [fasttext_reviews, textcnn_reviews], ids=["fasttext", "textcnn"])
def test_sharded_step_equals_single_device_step(tmp_path, module):
    system = _smoke(module, tmp_path)
    batch = next(iter(system.train_dataset()))
    single, single_history = run_steps(system, single_device_mesh(), 2, batch)
    sharded, history = run_steps(system, mesh_lib.make_mesh((8, 1, 1)), 2, batch)
    for name in history[-1]:
        np.testing.assert_allclose(history[-1][name], single_history[-1][name], rtol=1e-4, atol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), host(sharded.params), host(single.params)
    )


def test_max_norm_holds_the_output_weights_after_every_update(tmp_path):
    system = _smoke(textcnn_reviews, tmp_path, **{"model.max_norm": "0.5", "optim.learning_rate": "0.1"})
    state, _ = run_steps(system, single_device_mesh(), 3)
    norms = np.linalg.norm(host(state.params)["head"]["kernel"], axis=0)
    assert norms.shape == (2,) and np.all(norms <= 0.5 + 1e-5) and np.all(norms > 0.45)


def test_classifier_report_and_nb_ratios_follow_the_training_side(tmp_path):
    system = _smoke(fasttext_reviews, tmp_path, **{"model.arch": "nb_linear", "data.fold": "2"})
    ratio = system.fixed_variables()["nb"]["log_count_ratio"]
    assert ratio.shape == (system.tokenizer.vocab_size + 1024,)
    good, bad = (system.tokenizer.encode(word)[0] for word in ("wonderful", "worst"))
    assert ratio[good] > 1 and ratio[bad] < -1
    assert (tmp_path / "tokenizer.json").exists()
    state, _ = run_steps(system, single_device_mesh(), 1)
    with jax.set_mesh(single_device_mesh()), nn.logical_axis_rules(mesh_lib.RULES):
        report = system.sample(state, jax.random.PRNGKey(0))
        lines = system.sample(state, jax.random.PRNGKey(0), text="A wonderful film. | The worst.")
    assert report.confusion.shape == (2, 2)
    assert report.confusion.sum() == len(system.data.arrays("eval")["label"])
    assert [line.split()[0] in ("negative", "positive") for line in lines] == [True, True]
    assert lines[1].endswith("  The worst.")
