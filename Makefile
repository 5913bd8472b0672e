# The one task runner for humans and CI. Every target sets up what it needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
FHIR_PORT ?= 8080
FHIR_BASE_URL ?= http://127.0.0.1:$(FHIR_PORT)/fhir
export FHIR_PORT FHIR_BASE_URL
DEMO_PATIENTS ?= 200
DEMO_SEED ?= 1

.PHONY: setup browser-deps demo serve test test-unit lint fmt fhir-up fhir-down db-up db-down auth-up auth-down lb-up lb-down serve-app bench bench-cds deploy-check clean

$(BIN)/rls-screen: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,spark]'
	@touch $@

setup: $(BIN)/rls-screen browser-deps ## create .venv and install the module with its dev tools

browser-deps: ## system Chromium (Debian) and axe-core (npm ci) for the browser tests; fast when present
	@deploy/browser/install.sh || echo "warning: browser test dependencies missing (the browser tests will fail): see above" >&2

demo: setup fhir-up ## the main job: local HAPI + synthetic panel, screened and written back
	$(BIN)/rls-screen demo --patients $(DEMO_PATIENTS) --seed $(DEMO_SEED)

serve: setup ## the CDS Hooks service on 127.0.0.1:8090 in development mode (no JWT checks; loopback only)
	RLS_SCREEN_CDS_DEV_MODE=true $(BIN)/rls-screen serve

test: setup deploy-check ## all tests (starts the local HAPI server when none answers at FHIR_BASE_URL)
	$(BIN)/pytest

test-unit: setup ## pure tests only, no server
	$(BIN)/pytest -m unit

lint: setup ## ruff (lint + format check) and mypy --strict on service/
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench
	$(BIN)/mypy

fmt: setup
	$(BIN)/ruff format service tests bench
	$(BIN)/ruff check --fix service tests bench

fhir-up: ## build (cached) and start the local HAPI FHIR server on 127.0.0.1:$(FHIR_PORT)
	deploy/fhir-up.sh

fhir-down: ## stop the local HAPI FHIR server
	deploy/fhir-down.sh

db-up: ## start the local PostgreSQL (Debian package; installed when missing) for the shared state store, 127.0.0.1:55432
	deploy/db-up.sh

db-down: ## stop the local PostgreSQL (keeps its data; DB_DROP=1 deletes it)
	deploy/db-down.sh

auth-up: ## start the local SMART authorization server (oidc-provider from npm) on 127.0.0.1:8095
	deploy/auth-up.sh

auth-down: ## stop the local SMART authorization server
	deploy/auth-down.sh

lb-up: ## HAProxy (Debian package, installed when missing) on 127.0.0.1:8190 in front of replicas on 8191, 8192
	deploy/lb-up.sh

lb-down: ## stop the load balancer
	deploy/lb-down.sh

# The SMART app against the local HAPI and auth server (docs/smart-app.md); dev mode: loopback only.
APP_AUTH_URL ?= http://127.0.0.1:8095
serve-app: setup auth-up ## the CDS service with the SMART app on, 127.0.0.1:8090 (EHR launch: /app/launch)
	RLS_SCREEN_CDS_DEV_MODE=true RLS_SCREEN_PUBLIC_URL=http://127.0.0.1:8090 \
	RLS_SCREEN_APP_CLIENT_ID=rls-workup-summary RLS_SCREEN_APP_AUTH_SERVERS=$(APP_AUTH_URL) \
	RLS_SCREEN_APP_SMART_CONFIGURATION_URL=$(APP_AUTH_URL)/.well-known/smart-configuration \
	$(BIN)/rls-screen serve

bench: setup ## benchmarks; results go to docs/benchmarks.md
	$(BIN)/python bench/run.py --write docs/benchmarks.md

bench-cds: setup fhir-up ## CDS Hooks under load (vegeta, installed by bench/tools/install-vegeta.sh; needs Go)
	$(BIN)/python bench/cds_bench.py

deploy-check: ## helm lint + helm template | kubeconform -strict (tools built from the Go module proxy; needs Go)
	deploy/tools/deploy-check.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache var
