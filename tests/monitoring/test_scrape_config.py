"""The embedded environment's Prometheus and Alertmanager configurations
(``controller.drivers.embedded.monitoring``), checked by the real promtool and amtool:
one target per exporter of every server of the bundled examples, labelled by server,
tenantctl's rules loaded, Alertmanager routing each severity to a receiver of its own."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from controller import model
from controller.drivers.embedded import monitoring, servers

from .conftest import RULES

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example_servers() -> list[servers.ServerSpec]:
    ds = model.load_desired([EXAMPLES])
    return [servers.ServerSpec.from_dict({"name": name, **spec.model_dump(mode="json")})
            for name, spec in ds.servers.items()]


def by_job(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_promtool_accepts_the_configuration_of_the_examples(promtool: str, tmp_path: Path) -> None:
    config = monitoring.prometheus_config(example_servers(), tmp_path, scrape_interval="2s")
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 1 rule files found" in done.stdout + done.stderr
    assert config["rule_files"] == [str(RULES)]


def test_every_exporter_of_every_server_is_a_target(tmp_path: Path) -> None:
    specs = example_servers()
    jobs = by_job(monitoring.prometheus_config(specs, tmp_path))
    for exporter in monitoring.EXPORTERS:
        wanted = {(s.name, f"{s.address}:{exporter.port}") for s in specs
                  if exporter.role is None or exporter.role in s.roles}
        got = {(c["labels"]["instance"], c["targets"][0]) for c in jobs.get(exporter.job, {}).get("static_configs", ())}
        assert got == wanted, exporter.job
        assert wanted, f"no example server runs {exporter.job}"
    assert jobs["php-fpm"]["metrics_path"] == "/.tenantctl/fpm-status"
    assert jobs["php-fpm"]["params"] == {"openmetrics": [""]}
    assert jobs["tenantctl"]["static_configs"] == [{"targets": [monitoring.CONTROLLER_DEFAULT]}]


def test_the_controller_target_follows_run_s_address(tmp_path: Path) -> None:
    (tmp_path / "metrics.addr").write_text("127.0.0.1:9777\n")
    jobs = by_job(monitoring.prometheus_config(example_servers(), tmp_path))
    assert jobs["tenantctl"]["static_configs"] == [{"targets": ["127.0.0.1:9777"]}]


def test_two_environments_listen_on_addresses_of_their_own(tmp_path: Path) -> None:
    a, b = monitoring.host(tmp_path / "a"), monitoring.host(tmp_path / "b")
    assert a != b
    assert a.startswith("127.") and a != "127.0.0.1"
    assert monitoring.prometheus_url(tmp_path / "a") == f"http://{a}:{monitoring.PROMETHEUS_PORT}"
    assert monitoring.alertmanager_url(tmp_path / "b") == f"http://{b}:{monitoring.ALERTMANAGER_PORT}"


def test_amtool_accepts_the_routes_by_severity(tmp_path: Path) -> None:
    amtool = shutil.which("amtool")
    assert amtool, "amtool missing: `make deps` installs the Debian package prometheus-alertmanager"
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(monitoring.alertmanager_config()))
    done = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    for severity in ("critical", "warning", "info"):
        routed = subprocess.run([amtool, "config", "routes", "test", f"--config.file={path}",
                                 f"severity={severity}", "alertname=X"], capture_output=True, text=True, timeout=60)
        assert routed.stdout.strip() == severity, routed.stdout + routed.stderr
    unlabelled = subprocess.run([amtool, "config", "routes", "test", f"--config.file={path}", "alertname=X"],
                                capture_output=True, text=True, timeout=60)
    assert unlabelled.stdout.strip() == "default"


def test_every_severity_of_the_rules_has_a_receiver() -> None:
    rules = yaml.safe_load(RULES.read_text())
    severities = {r["labels"]["severity"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert severities <= set(monitoring.RECEIVERS)
