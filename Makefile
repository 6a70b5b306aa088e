# Quick start: `make chaos` (main job) and `make test` (all tests CI runs).
# Both create .venv if missing and install the project (with its dev extra) into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REPORTS ?= reports
PYTEST_FLAGS ?=
BASELINES ?= reports/baselines
SOAK ?= 1h
BASELINE_RUNS ?= 3

.PHONY: test chaos perf load soak soak-http baseline compare-error-rates integration unit bench example findings mutants mutation-score system-deps venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian packages some tests need (headless Chromium for the report test, e2fsprogs for loop ext4, strace).
# Best effort: without root or apt the tests that need them skip and say why.
system-deps:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	  missing=""; \
	  { command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || missing="$$missing chromium chromium-driver"; \
	  command -v mkfs.ext4 >/dev/null 2>&1 || missing="$$missing e2fsprogs"; \
	  command -v strace >/dev/null 2>&1 || missing="$$missing strace"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
	      || echo "warning: could not install$$missing; tests that need them will skip"; \
	  fi; \
	else echo "not root or no apt-get: skipping Debian packages (tests that need them will skip)"; fi

# Every unit and integration test plus the smoke subset of the chaos, perf and load suites.
test: $(STAMP) system-deps
	$(PY) -m pytest suites -m ci --testkit-results $(REPORTS)/test $(PYTEST_FLAGS)

# The main job: the whole chaos suite, then the HTML report.
chaos: $(STAMP) system-deps
	$(PY) -m pytest suites/chaos --testkit-report $(REPORTS)/chaos $(PYTEST_FLAGS)
	$(PY) -m testkit.report.browser $(REPORTS)/chaos/index.html --screenshot $(REPORTS)/chaos/screenshot.png
	@echo "chaos report: $(REPORTS)/chaos/index.html (full-page screenshot: $(REPORTS)/chaos/screenshot.png)"

# Power cuts and SIGKILLs over every shipped store configuration; writes the generated docs/findings.md.
FINDINGS_FLAGS ?=
findings: $(STAMP) system-deps
	$(PY) -m testkit.chaos.findings --out docs/findings.md $(FINDINGS_FLAGS)

# perf and load judge ADR-004's speed lines and compare with this machine's baseline in $(BASELINES)
# (or say there is none: `make baseline` makes one from $(BASELINE_RUNS) runs).
perf: $(STAMP)
	$(PY) -m pytest suites/perf --testkit-report $(REPORTS)/perf --testkit-baseline=$(BASELINES) $(PYTEST_FLAGS)

load: $(STAMP)
	$(PY) -m pytest suites/load --testkit-report $(REPORTS)/load --testkit-baseline=$(BASELINES) $(PYTEST_FLAGS)

# ADR-004's 10,000 events/s for $(SOAK) (make soak SOAK=10m / 24h / 72h), leak verdict and report.
soak: $(STAMP)
	$(PY) -m pytest suites/load/test_soak.py --testkit-duration=$(SOAK) --testkit-report $(REPORTS)/soak $(PYTEST_FLAGS)
	@echo "soak report: $(REPORTS)/soak/index.html"

# This machine's baseline: perf and load $(BASELINE_RUNS) times (speed recorded, not judged), pooled by run.
baseline: $(STAMP)
	rm -rf $(REPORTS)/baseline-runs
	for i in $$(seq $(BASELINE_RUNS)); do \
	  $(PY) -m pytest suites/perf suites/load --speed-lines=report \
	    --testkit-results $(REPORTS)/baseline-runs/$$i $(PYTEST_FLAGS) || exit $$?; \
	done
	$(PY) -m testkit.cli baseline $(BASELINES) $(REPORTS)/baseline-runs/*/results.json

# How often `testkit compare` cries wolf (A/A) and how often it catches planted 10 % / 30 % slowdowns.
compare-error-rates: $(STAMP)
	$(PY) -m benchmarks.compare_error_rates

integration: $(STAMP) system-deps
	$(PY) -m pytest suites/integration $(PYTEST_FLAGS)

unit: $(STAMP)
	$(PY) -m pytest suites/unit $(PYTEST_FLAGS)

# Seeded store bugs through the chaos tests relevant to each: prints caught/missed per bug (not in CI).
mutants: $(STAMP) system-deps
	$(PY) -m suites.chaos.mutants

# mutmut on the durability-critical modules, driven by the unit tests mapped to each (CPU-heavy, not in CI;
# needs the `mutation` extra): score per module and every surviving mutant with its kind and diff. A seeded
# sample of 30 mutants per module by default; MUTATION_FLAGS='--sample 0 --max-children 2' runs them all.
MUTATION_FLAGS ?=
mutation-score: $(STAMP)
	$(PY) -m pip install --quiet -e '.[mutation]'
	$(PY) -m suites.unit.mutation_score --diffs $(MUTATION_FLAGS)

# The kit as a new user meets it: built wheels, a fresh venv, one adapter module, `testkit chaos`.
example: $(STAMP) system-deps
	$(PY) -m pytest suites/examples -s $(PYTEST_FLAGS)

bench: $(STAMP)
	$(PY) -m lighthouse.bench

# ADR-004 over the wire: SOAK_RATE events/s from SOAK_AGENTS Locust agents into `lighthouse serve` for SOAK,
# judged on pooled percentiles, the history check and the server's RSS slope (report: reports/soak-http/).
# Batches of 100 by default, as `make soak` sends: buffering agents. SOAK_BATCH=1 sends single appends; on a
# 2-core machine benchmarks/http_bench.py's light clients reach 4,400-14,400 of those per second (32-128
# connections, depending on the machine's speed that hour), so 10,000/s beside Locust may not be reached.
SOAK_RATE ?= 10000
SOAK_AGENTS ?= 100
SOAK_BATCH ?= 100
soak-http: $(STAMP)
	$(PY) benchmarks/soak_http.py --duration $(SOAK) --rate $(SOAK_RATE) --agents $(SOAK_AGENTS) \
	  --batch $(SOAK_BATCH) --out $(REPORTS)/soak-http

clean:
	rm -rf $(VENV) build *.egg-info
