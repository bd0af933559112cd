# av_lightning front door. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= configs/toy.yaml
export TOKENIZERS_PARALLELISM := false

.DEFAULT_GOAL := help
.PHONY: help install test test-all demo tiny ablation bench lint toy-world toy-backbone clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	@free=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); \
	if [ "$$free" -lt 10 ]; then \
	  echo "warning: $$free GiB free in $$(pwd). On x86_64, PyPI's torch 2.9.1 is a CUDA build:" \
	       "about 3 GiB of downloads and 7 GiB installed. Free some space if the install stops" \
	       "with 'No space left on device'." >&2; \
	fi
	$(PY) -m pip install --no-cache-dir torch==2.9.1 'torchaudio==2.9.*'
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv: torch 2.9.1 + torchaudio 2.9, then this package with [dev]

test: $(STAMP) ## run the fast test suite (skips tests marked slow)
	$(PY) -m pytest -m "not slow" -q

test-all: $(STAMP) ## run every test, slow ones included
	$(PY) -m pytest -q

demo: $(STAMP) ## train the adapter on the embedded default and write docs/results/toy.md
	$(PY) -m av_lightning.toy.demo

tiny: $(STAMP) ## one minute smoke run of the whole method on tiny random parts
	$(PY) -m av_lightning fit --config configs/tiny.yaml
	@echo "logs and checkpoints: runs/tiny/lightning_logs"

ablation: $(STAMP) ## the paper's ablations (Tables 2-4) on CONFIG (default: the toy world)
	$(PY) -m av_lightning.toy.ablation --config $(CONFIG)

bench: $(STAMP) ## benchmarks (CPU; bench/gpu.py runs where a GPU is); tables go to docs/results/
	$(PY) -m bench.train_step --threads 1
	$(PY) -m bench.sample --threads 1
	$(PY) -m bench.toy_step --threads 2
	$(PY) -m bench.prompt_tokens
	$(PY) -m bench.av_align
	$(PY) -m bench.gpu

lint: $(STAMP) ## ruff
	$(PY) -m ruff check av_lightning tests bench

toy-world: $(STAMP) ## write the toy world (512 train + 64 test clips) to data/toy and check its ground truth
	$(PY) -m av_lightning.data.toyworld --root data/toy --train 512 --test 64
	$(PY) -m av_lightning.toy.check_world --root data/toy --split test --mode paper

# the world-v2 joint backbone, the starting point of the shipped world-v3 fine-tune (docs/results/toy_history.md)
TOY_INIT_REV ?= 41c9192
TOY_INIT := runs/toy_backbone_init_$(TOY_INIT_REV)
TOY_STEPS ?= 908
toy-backbone: $(STAMP) ## fine-tune the toy backbone on videos + images into runs/toy_backbone_v3 (resumable across sittings; CPU hours), then its gates
	mkdir -p $(TOY_INIT)
	test -d $(TOY_INIT)/av_lightning || git archive $(TOY_INIT_REV) av_lightning/assets/toy_backbone | tar -x -C $(TOY_INIT)
	nice -n 10 $(PY) -m av_lightning.toy.train_backbone --config configs/toy_backbone.yaml --out runs/toy_backbone_v3 --resume \
	    --init $(TOY_INIT)/av_lightning/assets/toy_backbone --steps $(TOY_STEPS)
	$(PY) -m av_lightning.toy.backbone_gate --backbone runs/toy_backbone_v3 --oracle-steps 150 --report runs/toy_backbone_v3/gate.md
	@echo "backbone: runs/toy_backbone_v3 (copy it over av_lightning/assets/toy_backbone, without train_state.pt, to ship it)"

clean: ## remove runs and caches (keeps .venv)
	rm -rf runs .pytest_cache
