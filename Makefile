# Every target that needs the environment builds it first, so each is one command
# on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast lint docs tensorboard bench get-data clean explore

install: $(STAMP)

# Without an NVIDIA GPU (no nvidia-smi), PyTorch's CPU build comes first (about 200 MB
# against several GB of CUDA libraries); TORCH_CPU=0 keeps PyPI's default build. Where
# the CPU index cannot be reached, PyPI's build is installed instead.
TORCH_CPU ?= $(if $(shell command -v nvidia-smi),0,1)
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	@if [ "$(TORCH_CPU)" = 1 ] && ! $(BIN)/python -c "import torch" 2>/dev/null; then \
	  echo "no NVIDIA GPU found: installing PyTorch's CPU build (TORCH_CPU=0 make install for PyPI's)"; \
	  $(BIN)/pip install --timeout 15 --retries 1 --index-url $(TORCH_CPU_INDEX) 'torch>=2.6' || \
	    echo "PyTorch's CPU index could not be reached: PyPI's build follows"; \
	fi
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

# Train the built-in default (the Python standard library's own source) for a few
# minutes, then print a sample from the best checkpoint.
demo: $(STAMP)
	$(BIN)/charlstm train --config configs/python-code.yaml --overwrite
	$(BIN)/charlstm sample --checkpoint runs/python-code --prime "def " --length 600 --temperature 0.8

# docs/pages/exploring.md, every number and report made again: the counter task and a
# code model trained (a few minutes on a CPU), then probed, steered, their reach and
# gates recorded and set beside an n-gram; the reports under runs/exploring/.
explore: $(STAMP)
	mkdir -p runs/exploring
	$(BIN)/charlstm train --config configs/counter.yaml --overwrite
	$(BIN)/charlstm tasks generate counter --out runs/exploring/counter.txt --count 400 --seed 1
	$(BIN)/charlstm probe -c runs/counter --text runs/exploring/counter.txt --feature 'past five=(?<=a{5})a+' --feature 'b run=b+'
	$(BIN)/charlstm inspect -c runs/counter --text runs/exploring/counter.txt --max-chars 4000 --reach --out runs/exploring/counter.html
	$(BIN)/python -c 'import charlstm; m = charlstm.load("runs/counter"); print({v: m.sample("aaaaaX", length=20, greedy=True, clamp=[f"0:9={v}"] if v is not None else []).split(chr(10))[0].count("b") for v in (None, -1, -0.5, 0, 0.5, 1)})'
	$(BIN)/charlstm train --config configs/python-code.yaml --set train.max_seconds=240 --overwrite
	code=$$($(BIN)/python -c 'import typer.main as m; print(m.__file__)'); \
	$(BIN)/charlstm probe -c runs/python-code --text $$code --feature "string literal" --feature indentation && \
	$(BIN)/charlstm inspect -c runs/python-code --text $$code --reach --out runs/exploring/code.html && \
	$(BIN)/python -m bench.steering --checkpoint runs/python-code --text $$code
	$(BIN)/charlstm eval -c runs/python-code --split val --baseline ngram:6

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

# tiny Shakespeare for configs/shakespeare*.yaml and the benchmarks (data/fetch_shakespeare.py:
# a copy of $$CHARLSTM_SHAKESPEARE when set, else downloaded).
get-data:
	$(PYTHON) data/fetch_shakespeare.py

clean:
	rm -rf $(VENV) runs .pytest_cache docs/site
