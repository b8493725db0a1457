# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv browser promtool test lint typecheck unit demo bench bench-webhooks chaos screenshots clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Tools some tests drive come from Debian, never downloaded by a test: Chromium for the
# dashboard's browser tests (through Playwright) and promtool (package `prometheus`) for the
# alert rules' unit tests. Installed here when missing: apt-get needs root (or sudo -n);
# without them those tests are skipped.
CHROMIUM ?= /usr/bin/chromium
# $(call apt_install,COMMAND,PACKAGES): install PACKAGES unless COMMAND is already there.
define apt_install
	@if command -v $(1) >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $(2); \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $(2); \
	else \
		echo "make: $(1) is missing and installing it needs root:" \
			"run 'sudo apt-get install $(2)' (what needs it is skipped until then)" >&2; \
	fi
endef

browser:
	$(call apt_install,$(CHROMIUM),chromium fonts-dejavu-core)

promtool:
	$(call apt_install,promtool,prometheus)

lint: venv
	$(BIN)/ruff check whatsapp_campaigns tests bench
	$(BIN)/ruff format --check whatsapp_campaigns tests bench
	$(BIN)/mypy
	$(BIN)/mypy bench

# `make test` leaves the checkout as it found it: the same changed and untracked files, with the
# same content, before and after the run (a test that writes into the tree fails it).
PYTEST_ARGS ?= -q
TREE_STATE := git status --porcelain --untracked-files=all 2>/dev/null; \
	git diff --binary 2>/dev/null | cksum
test: lint browser promtool
	@before="$$($(TREE_STATE))"; \
	$(BIN)/pytest $(PYTEST_ARGS) || exit $$?; \
	if [ "$$before" != "$$($(TREE_STATE))" ]; then \
		echo "make test: the run changed the checkout (a test wrote into the tree):" >&2; \
		git status --short >&2; exit 1; \
	fi

# The README's dashboard screenshots (docs/screenshots/), rewritten by the browser test.
screenshots: venv browser
	CAMPAIGNS_SCREENSHOTS=1 $(BIN)/pytest -q tests/test_dashboard_browser.py

demo: venv
	$(BIN)/campaigns demo

bench: venv
	$(BIN)/python bench/campaign_throughput.py

# The webhook ingest bench posts with wrk (Debian package `wrk`), installed here when missing
# (apt-get needs root or sudo -n), against PostgreSQL at BENCH_POSTGRES_URL.
BENCH_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
bench-webhooks: venv
	$(call apt_install,wrk,wrk)
	@command -v wrk >/dev/null 2>&1 || { echo "make bench-webhooks: wrk is needed" >&2; exit 1; }
	$(BIN)/python bench/webhook_ingest.py --postgres-url $(BENCH_POSTGRES_URL)

# The chaos suite: a 20,000-recipient campaign on the real multi-process stack while workers,
# Temporal, the store's connections, the API and WhatsApp (the sandbox) fail; prints the figures
# per fault. PostgreSQL at BENCH_POSTGRES_URL; CHAOS_ARGS="--soak" for 100,000 recipients.
CHAOS_ARGS ?=
chaos: venv
	$(BIN)/python bench/chaos.py --postgres-url $(BENCH_POSTGRES_URL) $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache campaigns.db* .campaigns
