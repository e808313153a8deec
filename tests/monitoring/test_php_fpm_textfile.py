"""The PHP-FPM per-pool collector the role installs on web servers
(``playbooks/roles/tenantctl_server/files/tenantctl-php-fpm-textfile``): its output is
valid exposition text (``promtool check metrics``) and keeps to its cardinality budget
however many pools a server has."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = (Path(__file__).resolve().parents[2] / "playbooks" / "roles" / "tenantctl_server" / "files"
          / "tenantctl-php-fpm-textfile")


def collector() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("tenantctl_php_fpm_textfile", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def pool_series(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        if line.startswith("tenantctl_php_fpm_pool_processes{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('pool="', 1)[1][:-2]] = int(value)
    return out


@pytest.mark.parametrize(("pools", "budget", "series"), [
    pytest.param(3, 20, 3, id="under-budget"),
    pytest.param(20, 20, 20, id="at-budget"),
    pytest.param(500, 20, 21, id="over-budget"),
])
def test_per_pool_series_stay_within_the_budget(pools: int, budget: int, series: int) -> None:
    counts = Counter({f"sub-{i:04d}": 1 + i % 7 for i in range(pools)})
    text = collector().render(counts, 1, budget)
    found = pool_series(text)
    assert len(found) == series
    assert sum(found.values()) == sum(counts.values())
    largest = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:budget]
    assert {k: v for k, v in found.items() if k != "_other"} == dict(largest)


def test_the_output_is_valid_exposition_text(promtool: str) -> None:
    counts = Counter({"www": 2, 'odd"name\\x': 1, "shop": 5})
    text = collector().render(counts, 1, 2)
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr + text
    assert 'tenantctl_php_fpm_pool_processes{pool="_other"} 1' in text
    assert "tenantctl_php_fpm_master_processes 1" in text


def test_php_fpm_down_is_zero_masters() -> None:
    text = collector().render(Counter(), 0, 20)
    assert "tenantctl_php_fpm_master_processes 0" in text
    assert "tenantctl_php_fpm_pools 0" in text
    assert pool_series(text) == {}
