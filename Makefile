# Two commands for a newcomer: `make demo` (the whole experiment on the offline demo) and `make test`.
# Each creates .venv inside the repository and installs into it on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test lint bench install clean-runs mutants

TEST_STAMP := $(VENV)/.installed-test

$(STAMP): pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints-cpu.txt torch numpy
	$(BIN)/pip install --quiet -c constraints-cpu.txt -e '.[demo,serve,test]'
	touch $(STAMP)

# the tests also read what the experiment trackers wrote and run the ONNX export; `make demo` stays without them
$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -c constraints-cpu.txt -e '.[demo,serve,test,track,onnx]'
	touch $(TEST_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/distill-lora compare --config demo

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q

# break chosen lines of the package on purpose (scripts/mutants.py lists them) and check a test fails for each
mutants: $(TEST_STAMP)
	$(BIN)/python scripts/mutants.py

# ruff: formatting and the rule set in pyproject.toml (CI runs it before the tests)
lint: $(STAMP)
	$(BIN)/ruff format --check distill_lora tests scripts
	$(BIN)/ruff check distill_lora tests scripts

bench: $(STAMP)
	$(BIN)/distill-lora bench

clean-runs:
	rm -rf runs
