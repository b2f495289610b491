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

# Lint, format check, then the test suite on 8 simulated CPU devices (tests/conftest.py sets them).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/gpt_step.py
	$(BIN)/python benchmarks/gpt_sampling.py
	$(BIN)/python benchmarks/image_steps.py
