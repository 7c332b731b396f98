# gpurelay: the two set-up commands are `make demo` and `make test`.
# Both create .venv and install on first use, and reuse it afterwards.

VENV     ?= .venv
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.installed
export YOLO_OFFLINE := 1
export YOLO_CONFIG_DIR := $(CURDIR)/.gpurelay-test/yolo
export XDG_CONFIG_HOME := $(CURDIR)/.gpurelay-test/xdg-config
export XDG_CACHE_HOME := $(CURDIR)/.gpurelay-test/xdg-cache

.PHONY: venv test lint typecheck pytest demo bench schema clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,ml]'
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy contracts services modal_workers bench

pytest: venv
	$(VENV)/bin/pytest

test: lint typecheck pytest

demo: venv
	$(VENV)/bin/gpurelay demo

bench: venv
	$(PY) bench/run.py

schema: venv
	$(VENV)/bin/gpurelay schema

clean:
	rm -rf .gpurelay-test .pytest_cache .mypy_cache .ruff_cache
