# The two commands a new user needs: `make demo` and `make test`.
# Each creates .venv and installs the project into it when missing or stale.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SAMPLE := issues/2026-11-24-survival-of-the-fittest-funnel.md
# axe-core, the accessibility checker the browser tests run on our pages and emails.
AXE    := $(VENV)/axe/node_modules/axe-core/axe.min.js

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,screenshots,postgres]'
	@touch $(STAMP)

$(AXE):
	npm install --silent --no-audit --no-fund --prefix $(VENV)/axe axe-core@4 \
	  || echo "axe-core not installed (is npm there?): the accessibility tests will not run"

demo: $(STAMP)
	$(BIN)/newsletter check issues/*.md
	$(BIN)/newsletter preview $(SAMPLE) --screenshots
	bash demo/send.sh $(SAMPLE)

test: $(STAMP) $(AXE) lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python bench/render.py
	$(BIN)/python bench/send.py
	$(BIN)/python bench/dkim.py
	$(BIN)/python bench/relays.py
	$(BIN)/python bench/cli.py
	cd bench && ../$(BIN)/python crash.py

clean:
	rm -rf build .pytest_cache .ruff_cache
