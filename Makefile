# The two quick-start commands. Each creates the virtual environment on first use.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Train the GPT on the embedded Shakespeare data (cpu preset, ~10 min on 2 cores), then print a sample.
demo: $(STAMP)
	$(BIN)/aigc-jax train gpt_shakespeare --preset cpu --workdir workdirs/demo

# Fashion-MNIST's IDX files come from Debian; installed here when running as root (CI), else explained.
FASHION_MNIST := /usr/share/datasets/fashion-mnist
$(FASHION_MNIST):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else echo "Fashion-MNIST is missing: run  sudo apt-get install dataset-fashion-mnist" >&2; exit 1; fi

# Every embedded data set the tests read, built into the shared cache before the tests start, so a build
# prints its progress here rather than inside one test's time (two workers would not both build one:
# `catalog.prepare` holds a lock while it builds).
TEST_DATA := shakespeare digits fashion_mnist fashion_scenes movie_review_sentences cmudict_g2p chitchat

# Lint, format check, then the test suite on 8 simulated CPU devices (tests/conftest.py sets them), in two
# worker processes: most of a test's time is single-threaded XLA compilation.
test: $(STAMP) $(FASHION_MNIST)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	for name in $(TEST_DATA); do $(BIN)/aigc-jax data prepare $$name || exit 1; done
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/gpt_step.py
	$(BIN)/python benchmarks/gpt_sampling.py
	$(BIN)/python benchmarks/image_steps.py
	$(BIN)/python benchmarks/batch_norm_form.py
	$(BIN)/python benchmarks/textcnn_step.py
	$(BIN)/python benchmarks/g2p_step.py
