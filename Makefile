# tenantctl: `make run` and `make test` are the two commands (README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STATE_DIR ?= $(CURDIR)/.state
export TENANTCTL_STATE_DIR := $(STATE_DIR)

# Debian packages the project and its tests need on the host. They are installed with
# a policy-rc.d that keeps their services from starting: tenantctl starts its own.
APT_PACKAGES := prometheus prometheus-alertmanager docker.io debootstrap openssh-client curl dnsutils mariadb-client postgresql-client zstd pebble restic rclone lftp
STAMP := $(VENV)/.installed

.PHONY: help setup deps venv lint typecheck test unit bench run clean

help:
	@echo "make run    install what is missing, apply the bundled examples, show status"
	@echo "make test   lint, type-check and run the test suite"
	@echo "make bench  print measured figures (bench/; fanout, dns_tls, backup and pitr bring up servers of their own)"

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  own_policy=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; own_policy=1; fi; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; rc=$$?; \
	  [ -z "$$own_policy" ] || rm -f /usr/sbin/policy-rc.d; \
	  exit $$rc; \
	fi

$(STAMP): pyproject.toml
	@$(PY) -c "import ensurepip, venv" 2>/dev/null || { \
	  echo "installing python3-venv"; export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv >/dev/null; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

setup: deps venv

lint: venv
	$(BIN)/ruff check controller tests bench stacks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test: setup lint
	$(BIN)/pytest -q -p no:cacheprovider --durations=25

bench: setup
	$(BIN)/python bench/effective.py
	$(BIN)/python bench/state_store.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/dns_tls.py
	$(BIN)/python bench/cli_scale.py
	$(BIN)/python bench/exposition.py
	$(BIN)/python bench/pitr.py
	$(BIN)/python bench/backup.py

run: setup
	$(BIN)/tenantctl validate -f examples/
	$(BIN)/tenantctl env up -f examples/
	$(BIN)/tenantctl apply -f examples/ || true
	$(BIN)/tenantctl backup run -f examples/ --all || true
	$(BIN)/tenantctl status
	@echo
	@echo "sites:"
	@$(BIN)/tenantctl urls
	@echo
	@echo "servers:  $(BIN)/tenantctl env status -f examples/"
	@echo "prometheus: $$($(BIN)/python -c 'import os, pathlib; from controller.drivers.embedded import monitoring as m; print(m.prometheus_url(pathlib.Path(os.environ["TENANTCTL_STATE_DIR"])))')  (alerts: /alerts, targets: /targets)"
	@echo "alertmanager: $$($(BIN)/python -c 'import os, pathlib; from controller.drivers.embedded import monitoring as m; print(m.alertmanager_url(pathlib.Path(os.environ["TENANTCTL_STATE_DIR"])))')"
	@echo "metrics:  $(BIN)/tenantctl run -f examples/ --metrics-addr 127.0.0.1:9500  (then curl 127.0.0.1:9500/metrics; Prometheus scrapes it there)"
	@echo "backups:  $(BIN)/tenantctl backup list SUB; $(BIN)/tenantctl restore -f examples/ SUB --from-region us-east"
	@echo "stop:     $(BIN)/tenantctl env down   (keeps the tenants; add --destroy-data to remove them)"

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
