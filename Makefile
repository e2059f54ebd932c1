# Tether. `make test` and `make up` do all their own set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
EGRESS_VENV := .venv-egress
EGRESS_STAMP := $(EGRESS_VENV)/.installed-$(shell cat pyproject.toml egress/requirements.txt | sha1sum | cut -c1-12)
PYTEST_ARGS ?=
HELM = $(or $(TETHER_CACHE),$(HOME)/.cache/tether)/helm-v3.21.4/bin/helm

.PHONY: venv control-plane node-parts system-deps crds crds-check lint format test chaos fuzz check up down demo demo-browser bench bench-memory bench-kwok bench-sandbox images kind-up kind-deploy kind-e2e

## The platform's environment (.venv), and the egress proxy's (.venv-egress: mitmproxy's pins
## clash with the vendor SDKs', see egress/requirements.txt).
venv: $(STAMP) $(EGRESS_STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

$(EGRESS_STAMP): pyproject.toml egress/requirements.txt
	@test -x $(EGRESS_VENV)/bin/python || $(PYTHON) -m venv $(EGRESS_VENV)
	$(EGRESS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r egress/requirements.txt
	$(EGRESS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@rm -f $(EGRESS_VENV)/.installed-* && touch $@

## Build (once, cached by version under ~/.cache/tether) etcd, kube-apiserver,
## kube-controller-manager, kubectl and helm.
control-plane:
	@scripts/control-plane.sh

## Build and install (once, cached by version) a real worker node's parts: kubelet, kube-proxy,
## kube-scheduler, containerd 2, gVisor, kube-router, CoreDNS, local-path-provisioner, and
## Debian's runc, CNI plugins, iptables, ipset, buildah and debootstrap.
node-parts:
	@scripts/node.sh

## Debian packages the test stack runs on the host: redis-server, and Chromium (the browser
## tools' tests drive it from the workspace server on the host).
system-deps:
	@command -v redis-server >/dev/null && command -v chromium >/dev/null || { \
	  echo "installing redis-server and chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq redis-server chromium fonts-liberation >/dev/null; }

## Regenerate crds/ from the pydantic models in tether/api.
crds: venv
	$(PY) -m tether.crds

crds-check: venv
	$(PY) -m tether.crds --check

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## The whole suite: unit tests and integration tests against a real local control plane.
test: venv control-plane node-parts system-deps
	$(VENV)/bin/pytest --ignore=tests/chaos $(PYTEST_ARGS)

## The fault and load suite (under 5 min): kills the operator, gateway, Redis and API server of
## a stack of its own under load, then checks every run ended exactly once. CHAOS_* tune it.
chaos: venv control-plane node-parts system-deps
	$(VENV)/bin/pytest tests/chaos $(PYTEST_ARGS)

## The fuzzing alone (part of `make test`): schemathesis from /openapi.json, seeded, and the
## hand-written hostile inputs, each in a tenant of its own; prints how many requests it sent.
fuzz: venv control-plane node-parts system-deps
	$(VENV)/bin/pytest -m fuzz tests/fuzz $(PYTEST_ARGS)

check: lint crds-check test

## Tether as users run it, in the background: the chart, installed by helm onto a local control
## plane and a real node, from images built here; prints how to call it. Needs root.
up: venv control-plane node-parts
	@$(PY) -m tether.dev.up up

down: venv
	@$(PY) -m tether.dev.up down

## The seed article's worked example against `make up`: an agent run in a sandbox pod
## fetches two pricing pages, parses them with Python, and writes prices.csv.
demo: venv
	@$(PY) -m tether.dev.demo

## The same with pages that render their prices with JavaScript: the agent reads them with its
## headless browser (browser_navigate), where a plain fetch shows no price.
demo-browser: venv
	@$(PY) -m tether.dev.demo --browser

## Gateway overhead on each provider path, against calling the model server directly and
## against LiteLLM's proxy; writes BENCHMARKS.md. The first run installs LiteLLM in a venv of
## its own (~/.cache/tether/bench/litellm-venv); `bench/overhead.py --no-peer` skips it.
bench: venv control-plane node-parts system-deps
	$(PY) bench/overhead.py

## What the local stack holds in memory, idle and after 10,000 interactions; writes its section
## of BENCHMARKS.md.
bench-memory: venv control-plane node-parts system-deps
	$(PY) bench/memory.py

## 1,000 agent runs in flight at once on kwok's fake nodes: accepted → pod bound, memory, API
## objects and bytes per run; writes its section of BENCHMARKS.md. Needs root, and no `make up`.
bench-kwok: venv control-plane node-parts system-deps
	$(PY) bench/kwok_scale.py

## make up's start, cold and warm, and agent-run start latency on the real node under runc
## and gVisor; writes its section of BENCHMARKS.md. Needs root, and no `make up` running.
bench-sandbox: venv control-plane node-parts
	$(PY) bench/sandbox_start.py

# -- Real clusters, for users with Docker (not exercised by CI: these machines have no Docker) --

IMAGE_REGISTRY ?= ghcr.io/tether-dev
IMAGE_TAG ?= 0.1.0
KIND_CLUSTER ?= tether
IMAGES := operator gateway sandbox

## Build the operator, gateway and sandbox images: with Docker where there is one; otherwise
## with buildah (as root), into the local store the real node imports from (tether.local/...:dev),
## against a debootstrap stand-in for python:3.11-slim when it cannot be pulled.
images:
	@if command -v docker >/dev/null 2>&1; then \
	  for target in $(IMAGES); do \
	    docker build --target $$target -t $(IMAGE_REGISTRY)/tether-$$target:$(IMAGE_TAG) . || exit 1; \
	  done; \
	else \
	  $(MAKE) --no-print-directory venv node-parts && $(PY) -m tether.dev.worker.images; \
	fi

kind-up:
	kind create cluster --name $(KIND_CLUSTER) --config deploy/kind-config.yaml

## Build the images, load them into kind, and helm install Tether.
kind-deploy: images control-plane
	@for target in $(IMAGES); do \
	  kind load docker-image $(IMAGE_REGISTRY)/tether-$$target:$(IMAGE_TAG) --name $(KIND_CLUSTER) || exit 1; \
	done
	$(HELM) upgrade --install tether charts/tether -n tether-system --create-namespace \
	  --set image.registry=$(IMAGE_REGISTRY) --set image.tag=$(IMAGE_TAG) \
	  --set image.pullPolicy=Never --wait --timeout 5m

## The SDK e2e suite against the kind deployment, through a port-forward.
kind-e2e: venv
	@kubectl -n tether-system port-forward svc/tether-gateway 18080:8080 >/dev/null & \
	  trap "kill $$!" EXIT; sleep 2; \
	  TETHER_E2E_URL=http://127.0.0.1:18080 \
	  TETHER_E2E_API_KEY=$$(kubectl -n tether-system get secret api-key-tenant-default -o jsonpath='{.data.key}' | base64 -d) \
	  $(VENV)/bin/pytest tests/e2e
