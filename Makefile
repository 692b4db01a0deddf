# Every target that needs the environment builds it first, so each is one command
# on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast lint docs tensorboard bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

# Train the built-in default (the Python standard library's own source) for a few
# minutes, then print a sample from the best checkpoint.
demo: $(STAMP)
	$(BIN)/charlstm train --config configs/python-code.yaml --overwrite
	$(BIN)/charlstm sample --checkpoint runs/python-code --prime "def " --length 600 --temperature 0.8

# The whole suite, slow tests included (what CI runs).
test: $(STAMP)
	$(BIN)/python -m pytest -q

# The quick loop while developing.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check charlstm tests bench
	$(BIN)/ruff format --check charlstm tests bench

# The documentation site (docs/pages, MkDocs) into docs/site; strict: a broken link fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -f docs/mkdocs.yml

tensorboard: $(STAMP)
	$(BIN)/tensorboard --logdir runs/

clean:
	rm -rf $(VENV) runs .pytest_cache docs/site
