# gpurelay: the two set-up commands are `make demo` and `make test`.
# Both create .venv and install on first use, and reuse it afterwards.

VENV     ?= .venv
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.installed
export YOLO_OFFLINE := 1
export YOLO_CONFIG_DIR := $(CURDIR)/.gpurelay-test/yolo
export XDG_CONFIG_HOME := $(CURDIR)/.gpurelay-test/xdg-config
export XDG_CACHE_HOME := $(CURDIR)/.gpurelay-test/xdg-cache

CHROMIUM ?= /usr/bin/chromium

.PHONY: venv test lint typecheck pytest browser netfaults-tools client-js client-js-build examples demo bench schema clean

# uv installs (pip's sources passed on by tools/uv_install.py): a fresh clone's install took 63 s here, pip's 153 s.
$(STAMP): pyproject.toml clients/python/pyproject.toml constraints.txt tools/uv_install.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt uv
	$(PY) tools/uv_install.py --quiet --compile-bytecode -c constraints.txt -e '.[dev,ml,rerun]' -e ./clients/python
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .

# The client's strict check runs beside the main one (two cores; its own cache, as its options differ).
typecheck: venv
	@$(VENV)/bin/mypy --strict --cache-dir .mypy_cache/strict-client clients/python & client=$$!; \
	$(VENV)/bin/mypy contracts services modal_workers bench tools; main=$$?; \
	wait $$client; client=$$?; \
	[ $$main = 0 ] && [ $$client = 0 ]

# The dashboard's browser tests drive Debian's chromium through Playwright (never `playwright
# install`): installed here when it is missing and we are root; elsewhere those tests skip, saying so.
browser:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
	      || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
	      || echo "could not install chromium: the browser tests will skip"; \
	  else \
	    echo "$(CHROMIUM) is missing and this is not root: the browser tests will skip"; \
	  fi; \
	fi

# The network-fault suite (tests/netfaults) runs each host in its own network namespace: it needs root,
# iproute2, iptables and Debian's faketime (the clock step), installed here when missing and we are
# root; elsewhere those tests skip, saying so (GPURELAY_REQUIRE_NETFAULTS=1 makes that a failure).
netfaults-tools:
	@missing=""; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v iptables >/dev/null || missing="$$missing iptables"; \
	ls /usr/lib/*/faketime/libfaketimeMT.so.1 >/dev/null 2>&1 || missing="$$missing faketime"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing for the network-fault suite"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing \
	      || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; } \
	      || echo "could not install$$missing: the network-fault tests will skip"; \
	  else \
	    echo "$$missing missing and this is not root: the network-fault tests will skip"; \
	  fi; \
	fi

# The suite runs in PYTEST_WORKERS processes, each taking whole test files (module fixtures are set up
# once); the tests marked serial (a TLS cluster) and the network-fault suite run on their own afterwards,
# as their nodes' timing is what they test. Each run lists its 25 slowest tests (CI's whole run must
# stay well under 25 minutes: this is where to look first).
PYTEST_WORKERS ?= 3
# Each phase has a time limit well inside CI's 90 minutes: past it pytest is interrupted (SIGINT), prints
# what failed so far and the tests still running (tests/support/running.py), and the phase fails, so a
# hang is named in the log instead of CI ending the job without a word.
LIMIT := timeout --foreground --signal=INT --kill-after=60
PARALLEL_LIMIT_S ?= 2400
SERIAL_LIMIT_S   ?= 600
NETFAULTS_LIMIT_S ?= 900
CLIENT_JS_LIMIT_S ?= 600

pytest: venv browser netfaults-tools examples
	$(LIMIT) $(PARALLEL_LIMIT_S) $(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not netfaults and not serial" --durations=25
	$(LIMIT) $(SERIAL_LIMIT_S) $(VENV)/bin/pytest -m serial
	$(LIMIT) $(NETFAULTS_LIMIT_S) $(VENV)/bin/pytest -m netfaults tests/netfaults

# The TypeScript client (clients/js): installed from its lockfile, built, its API types checked against
# docs/openapi.json, and its tests run against a `gpurelay dev` they start (Chromium's tests as above).
JS       := clients/js
JS_STAMP := $(JS)/node_modules/.installed

$(JS_STAMP): $(JS)/package-lock.json $(JS)/package.json
	@command -v npm >/dev/null || { echo "npm (Node.js 20 or newer) is needed for clients/js"; exit 1; }
	cd $(JS) && npm ci --no-audit --no-fund
	touch $(JS_STAMP)

client-js-build: $(JS_STAMP)
	cd $(JS) && npm run build

client-js: venv browser client-js-build
	cd $(JS) && npm run check:types && $(LIMIT) $(CLIENT_JS_LIMIT_S) npm test

# The web examples (examples/*-web): each installed from its lockfile (the client as a link to
# clients/js) and built with vite; tests/examples drives the builds in Chromium.
EXAMPLES_WEB    := $(patsubst %/package.json,%,$(wildcard examples/*-web/package.json))
EXAMPLES_STAMPS := $(EXAMPLES_WEB:%=%/node_modules/.installed)

examples/%/node_modules/.installed: examples/%/package-lock.json examples/%/package.json
	@command -v npm >/dev/null || { echo "npm (Node.js 20 or newer) is needed for the web examples"; exit 1; }
	cd examples/$* && npm ci --no-audit --no-fund
	touch $@

examples: client-js-build $(EXAMPLES_STAMPS)
	@for dir in $(EXAMPLES_WEB); do (cd $$dir && npm run build) || exit 1; done

test: lint typecheck pytest client-js

demo: venv
	$(VENV)/bin/gpurelay demo

# The network-fault soak needs the test harness (bench/ may not import tests/), so it is a pytest run.
bench: venv netfaults-tools
	$(PY) bench/run.py
	$(VENV)/bin/pytest -m netfaults_long tests/netfaults -s

schema: venv
	$(VENV)/bin/gpurelay schema

clean:
	rm -rf .gpurelay-test .pytest_cache .mypy_cache .ruff_cache $(JS)/dist $(JS)/node_modules
	rm -rf $(EXAMPLES_WEB:%=%/dist) $(EXAMPLES_WEB:%=%/node_modules)
