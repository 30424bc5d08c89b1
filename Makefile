# The README's two commands: `make demo` and `make test`. Both install first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   ?= ../shared/datasets

.PHONY: install install-browser demo test test-fast schemas lint bench bench-quick clean

install: $(STAMP)

# torch first and pinned, so pip takes the builds that lie on local disk
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev,spark]'
	touch $(STAMP)

demo: install
	$(BIN)/anchor-embed demo --out demo-out

# Debian's chromium for the review-page test (playwright drives it; its own browser download would fail)
install-browser:
	@command -v chromium >/dev/null 2>&1 || (command -v apt-get >/dev/null 2>&1 && \
	  (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && \
	   apt-get install -y -q chromium >/dev/null 2>&1))) || echo "no chromium here: the review-page test will skip"

test: install install-browser
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

schemas: install
	$(BIN)/python -m anchor_embed.data.schemas data_schemas

lint: install
	$(BIN)/ruff check anchor_embed tests benchmarks

bench: install
	$(BIN)/python -m benchmarks.run --data $(DATA) --out bench-out --report BENCHMARKS.md

bench-quick: install
	$(BIN)/python -m benchmarks.run --data $(DATA) --out bench-out --report BENCHMARKS.md --quick

clean:
	rm -rf demo-out bench-out .pytest_cache
