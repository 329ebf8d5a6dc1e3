# Two commands on a fresh machine (Python 3.11):
#   make run    set up .venv and run the whole pipeline on config.yaml (on every GPU of the machine)
#   make test   set up .venv, lint, and run the test suite
#   make bench  the three CPU benchmarks against their baselines (results/bench/*.json)
# and for a SLURM cluster (on its login node):
#   make slurm  the pipeline through profiles/slurm (train and predict jobs go to the cluster)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.koqa-installed
# The SLURM executor plugin lives outside the venv's site-packages (see requirements-slurm.txt):
# only the Snakemake calls that put this folder on PYTHONPATH load it.
SLURM_PLUGINS := $(VENV)/slurm-plugins
SLURM_STAMP := $(SLURM_PLUGINS)/.koqa-installed

.PHONY: run test lint slurm slurm-plugins bench

# A venv made before the SLURM plugin moved out still has it in site-packages: removed here.
$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -e .
	$(BIN)/python -m pip uninstall --quiet --yes \
		snakemake-executor-plugin-slurm snakemake-executor-plugin-slurm-jobstep 2>/dev/null
	touch $@

$(SLURM_STAMP): requirements-slurm.txt $(STAMP)
	rm -rf $(SLURM_PLUGINS)
	$(BIN)/python -m pip install --quiet --no-deps --target $(SLURM_PLUGINS) \
		-r requirements-slurm.txt
	touch $@

slurm-plugins: $(SLURM_STAMP)

# As many GPU jobs at once as the machine has GPUs (python -m koqa.gpus: the pool's size), each
# on its own GPU; none is limited on a machine without GPUs.
run: $(STAMP)
	gpus=$$($(BIN)/python -m koqa.gpus); \
	$(BIN)/snakemake --cores all $$(test "$$gpus" -gt 0 && echo --resources gpu=$$gpus)

slurm: $(SLURM_STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH PYTHONPATH=$(CURDIR)/$(SLURM_PLUGINS) \
		$(BIN)/snakemake --profile profiles/slurm

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint

test: lint $(SLURM_STAMP)
	$(BIN)/python -m pytest

# About 15 minutes on a quiet 2-core machine (see each script's --help for its size); each writes
# results/bench/NAME.json with its figure, baseline, ratio, target and the machine.
bench: $(STAMP)
	$(BIN)/python bench/prep.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/predict.py
