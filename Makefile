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

# Lint, format check, then the test suite on 8 simulated CPU devices (tests/conftest.py sets them).
test: $(STAMP) $(FASHION_MNIST)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/gpt_step.py
	$(BIN)/python benchmarks/gpt_sampling.py
	$(BIN)/python benchmarks/image_steps.py
	$(BIN)/python benchmarks/textcnn_step.py
	$(BIN)/python benchmarks/g2p_step.py
