# Two entry points a fresh machine needs: `make run` and `make test`. Both build .venv on demand.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: run test lint fixtures golden clean lab lab-down fuzz

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# The stamps depend on pyproject.toml, so a changed dependency list reinstalls.
# The man page goes into the virtualenv's share/man, where `man tcphealth` finds it when .venv/bin
# is on PATH (man derives its search path from PATH): a copy of man/tcphealth.1 (made from the
# --help texts; a test fails when it is stale), copied again whenever that file changes, so a
# checkout that moved on never keeps the page its .venv was first built with.
MANPAGE := $(VENV)/share/man/man1/tcphealth.1

$(VENV)/.installed-run: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

$(MANPAGE): man/tcphealth.1 | $(VENV)/bin/python
	mkdir -p $(dir $@) && cp man/tcphealth.1 $@

# man/tcphealth.1, the copy a wheel installs (pyproject.toml's data-files), made again from the
# --help texts; tests/test_terminal.py fails when it is out of date.
.PHONY: man
man: $(VENV)/.installed-test
	$(PY) -m tcphealth.manpage > man/tcphealth.1

# A bare `man tcphealth` (without .venv/bin on PATH) finds the page through a link in the
# system's local man directory, made where this user may write there (root); the `-` keeps a
# user who may not from failing the run.
SYSTEM_MAN1 ?= /usr/local/share/man/man1

run: $(VENV)/.installed-run $(MANPAGE)
	-@mkdir -p $(SYSTEM_MAN1) 2>/dev/null && ln -sf $(abspath $(MANPAGE)) $(SYSTEM_MAN1)/tcphealth.1 2>/dev/null
	$(VENV)/bin/tcphealth $(ARGS)

test: $(VENV)/.installed-test $(MANPAGE)
	$(PY) -m pytest

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check tcphealth tests fixtures lab benchmarks
	$(VENV)/bin/ruff format --check tcphealth tests fixtures lab benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The hostile-input fuzz (tests/hostile_fuzz.py) for longer than the suite's few seconds:
# `make fuzz FUZZ_SECONDS=600 FUZZ_SEED=26`. Never part of `make test`/CI.
FUZZ_SECONDS ?= 600
FUZZ_SEED ?= 26
fuzz: $(VENV)/.installed-test
	$(PY) -m tests.hostile_fuzz --seconds $(FUZZ_SECONDS) --seed $(FUZZ_SEED)

# The scenario snapshots in fixtures/ are generated from fixtures/make_scenarios.py ...
fixtures: $(VENV)/.installed-test
	$(PY) fixtures/make_scenarios.py

# ... and the expected output of each, in every format, lives in tests/golden/.
golden: $(VENV)/.installed-test
	$(PY) -m tests.golden_update

# The namespace lab (root, iproute2, nftables): every TCP state held for real, for a look by
# hand with `tcphealth --netns NAME`. It stops by itself after SECONDS.
SECONDS ?= 600
lab: $(VENV)/.installed-test
	$(PY) -m lab up --seconds $(SECONDS)

lab-down: $(VENV)/.installed-test
	$(PY) -m lab down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The scale benchmark (benchmarks/run.py): `make bench N=300000`. Never part of `make test`/CI.
N ?= 100000
ROUNDS ?= 5
.PHONY: bench bench-deps bench-netns bench-memory
bench: $(VENV)/.installed-test
	$(PY) -m benchmarks.run --sockets $(N) --rounds $(ROUNDS)

# Every network namespace at scale (root): 50 namespaces x 2,000 sockets against loops of
# nsenter/ip netns exec + ss -tanp (issue 20); BASELINE=DIR adds the host-only run of another tree.
bench-netns: $(VENV)/.installed-test
	$(PY) -m benchmarks.netns_scale --namespaces 50 --sockets 2000 --rounds 3 \
		$(if $(BASELINE),--baseline $(BASELINE)) --output benchmarks/results/netns-50x2000.json

# Peak memory on the largest inputs (issue 26): a 1,000,000-row /proc table and a
# 300,000-socket snapshot replay, each as check and as sockets --format json.
bench-memory: $(VENV)/.installed-test
	$(PY) -m benchmarks.memory --live 300000 --rows 1000000 --sockets 300000 --at-limit \
		--output benchmarks/results/memory-1m-300k.json

# The tools the benchmark compares with -- ss (iproute2), netstat (net-tools), lsof -- and GNU
# time, which measures each one's peak memory.
bench-deps:
	@missing=""; \
	command -v ss >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v netstat >/dev/null 2>&1 || missing="$$missing net-tools"; \
	command -v lsof >/dev/null 2>&1 || missing="$$missing lsof"; \
	/usr/bin/time --version 2>&1 | grep -q GNU || missing="$$missing time"; \
	if [ -n "$$missing" ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "bench-deps: ss, netstat, lsof and GNU time are installed"; fi

# What a Prometheus scrape of `tcphealth serve` costs at N sockets, against a full report
# (benchmarks/scrape.py; results in benchmarks/RESULTS.md); BASELINE="CMD ..." scrapes older
# servers in the same rounds; SERVE_ARGS="--netns self" is added to every server's command.
# Never part of `make test`/CI.
.PHONY: bench-scrape rules
bench-scrape: $(VENV)/.installed-test
	$(PY) -m benchmarks.scrape --sockets $(N) --rounds $(ROUNDS) $(foreach b,$(BASELINE),--baseline $(b)) \
		$(foreach a,$(SERVE_ARGS),--serve-arg=$(a))

# The shipped alert rules: checked and unit-tested by promtool (the Debian package
# prometheus). `make test` runs the same through tests/test_prometheus.py.
rules:
	promtool check rules deploy/prometheus/tcphealth-rules.yml
	promtool test rules deploy/prometheus/tcphealth-rules.test.yml
