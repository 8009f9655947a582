# Every target does its own set-up: a fresh clone needs nothing but python3 >= 3.11.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test chaos cluster bench lint images compose-up compose-down clean

$(STAMP): pyproject.toml wal/_speedups.c
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

chaos: $(STAMP)
	$(BIN)/python -m pytest -q -m chaos

cluster: $(STAMP)
	$(BIN)/raft-cluster up -n 3

bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

images:  # raftnode-base (debootstrap), raftnode, raftnode-prometheus: no registry needed
	deploy/image/build.sh

compose-up: images
	docker-compose up -d

compose-down:
	docker-compose down -v

clean:
	rm -rf $(VENV) .cluster .pytest_cache .mypy_cache .ruff_cache
