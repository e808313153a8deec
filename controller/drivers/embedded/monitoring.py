"""Prometheus and Alertmanager of an embedded environment (issue 12), on the host.

Both come from Debian (``prometheus``, ``prometheus-alertmanager``: ``make deps``) and are
processes of the environment: ``env up`` starts them (idempotently: a running pair with
the same command line only reloads a changed configuration), ``env down`` stops them
with the environment's Pebble, their data is kept under ``<state>/prometheus/``. They
listen on the environment's own loopback address (Pebble's, ``pebble.host``), so two
environments on one machine never collide: Prometheus on ``PROMETHEUS_PORT``,
Alertmanager on ``ALERTMANAGER_PORT``, Alertmanager's cluster port disabled.

The scrape configuration is generated from the desired state: one job per exporter
(``EXPORTERS``: node, nginx, php-fpm, mysqld, postgres, pdns), each target on its
server's own address with ``instance`` = the server's name and ``region``; the
controller's ``tenantctl run --metrics-addr`` as job ``tenantctl`` (the address written
in ``<state>/metrics.addr`` when ``run`` serves one, else ``CONTROLLER_DEFAULT``); both
programs themselves. tenantctl's rules (``monitoring/prometheus/tenantctl.rules.yml``)
are loaded (a test may hand a copy of them: ``up(..., rules=PATH)``); Alertmanager
routes by the rules' ``severity`` label to one receiver per severity (``RECEIVERS``: no
notifier configured, a place to add one).

State under ``<state>/prometheus/``: ``prometheus.yml``, ``alertmanager.yml``, ``data/``
(the TSDB), ``alertmanager/`` (silences, notification log), ``<program>.pid``,
``<program>.log`` and ``<program>.argv.sha256`` (the command line that runs).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from controller.drivers.embedded import errors, pebble, processes, servers
from controller.drivers.embedded.servers import ServerSpec

PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
#: where the controller's metrics are scraped unless ``tenantctl run`` recorded another
#: address in ``<state>/metrics.addr``: the address ``make run`` tells to serve them on
CONTROLLER_DEFAULT = "127.0.0.1:9500"
SCRAPE_INTERVAL = "15s"
RETENTION = "15d"
RULES = Path(__file__).resolve().parents[3] / "monitoring" / "prometheus" / "tenantctl.rules.yml"
#: Alertmanager's receivers by the rules' ``severity`` label (unmatched alerts: "default")
RECEIVERS = ("critical", "warning", "info")
_START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Exporter:
    """One scrape job on every server that has ``role`` (every server when None)."""

    job: str
    port: int
    role: str | None
    path: str = "/metrics"
    params: dict[str, list[str]] = field(default_factory=dict)


#: the role ``tenantctl_server`` starts these (ports: its defaults/main.yml)
EXPORTERS = (
    Exporter("node", 9100, None),
    Exporter("nginx", 9113, "web"),
    Exporter("php-fpm", 9112, "web", "/.tenantctl/fpm-status", {"openmetrics": [""]}),
    Exporter("mysqld", 9104, "db-mariadb"),
    Exporter("postgres", 9187, "db-postgresql"),
    Exporter("pdns", 8081, "dns"),
)


def host(state_dir: Path) -> str:
    """The environment's own loopback address (shared with its Pebble, other ports)."""
    return pebble.host(state_dir)


def prometheus_url(state_dir: Path) -> str:
    return f"http://{host(state_dir)}:{PROMETHEUS_PORT}"


def alertmanager_url(state_dir: Path) -> str:
    return f"http://{host(state_dir)}:{ALERTMANAGER_PORT}"


def directory(state_dir: Path) -> Path:
    path = Path(state_dir).resolve() / "prometheus"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def controller_address(state_dir: Path) -> str:
    """Where ``tenantctl run`` of this state directory serves /metrics (or the default)."""
    marker = Path(state_dir) / "metrics.addr"
    recorded = marker.read_text().strip() if marker.exists() else ""
    return recorded or CONTROLLER_DEFAULT


def targets(servers_: Iterable[ServerSpec]) -> dict[str, list[dict[str, Any]]]:
    """``{job: [static_config, ...]}``: each exporter of each server, labelled."""
    jobs: dict[str, list[dict[str, Any]]] = {e.job: [] for e in EXPORTERS}
    for server in sorted(servers_, key=lambda s: s.name):
        for exp in EXPORTERS:
            if exp.role is None or exp.role in server.roles:
                jobs[exp.job].append({"targets": [f"{server.address}:{exp.port}"],
                                      "labels": {"instance": server.name, "region": server.region}})
    return {job: configs for job, configs in jobs.items() if configs}


def prometheus_config(
    servers_: Iterable[ServerSpec], state_dir: Path, *, scrape_interval: str = SCRAPE_INTERVAL,
    controller: str | None = None, rules: Path = RULES,
) -> dict[str, Any]:
    """The scrape configuration of the environment (``prometheus.yml``); ``rules``: the
    rule file loaded (tenantctl's unless a test hands a copy of it)."""
    me = host(state_dir)
    scrape: list[dict[str, Any]] = [
        {"job_name": "tenantctl", "static_configs": [{"targets": [controller or controller_address(state_dir)]}]},
    ]
    by_job = {e.job: e for e in EXPORTERS}
    for job, configs in targets(servers_).items():
        entry: dict[str, Any] = {"job_name": job, "metrics_path": by_job[job].path, "static_configs": configs}
        if by_job[job].params:
            entry["params"] = by_job[job].params
        scrape.append(entry)
    scrape += [
        {"job_name": "prometheus", "static_configs": [{"targets": [f"{me}:{PROMETHEUS_PORT}"]}]},
        {"job_name": "alertmanager", "static_configs": [{"targets": [f"{me}:{ALERTMANAGER_PORT}"]}]},
    ]
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval,
                   "external_labels": {"environment": servers.env_id(state_dir)}},
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"{me}:{ALERTMANAGER_PORT}"]}]}]},
        "rule_files": [str(Path(rules).resolve())],
        "scrape_configs": scrape,
    }


def alertmanager_config() -> dict[str, Any]:
    """Routes by severity to one receiver each; no notifier (add ``webhook_configs`` etc.)."""
    return {
        "route": {
            "receiver": "default",
            "group_by": ["alertname", "instance"],
            "group_wait": "10s", "group_interval": "1m", "repeat_interval": "4h",
            "routes": [{"matchers": [f'severity="{sev}"'], "receiver": sev} for sev in RECEIVERS],
        },
        "receivers": [{"name": "default"}, *({"name": sev} for sev in RECEIVERS)],
    }


@dataclass(frozen=True)
class _Program:
    name: str
    binary: str
    config: str
    argv: tuple[str, ...]
    url: str


def _programs(state_dir: Path) -> list[_Program]:
    d = directory(state_dir)
    me = host(state_dir)
    prom = shutil.which("prometheus")
    am = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if prom is None or am is None:
        raise errors.EmbeddedError("prometheus and prometheus-alertmanager are not installed "
                                   "(apt-get install prometheus prometheus-alertmanager; `make deps` does)")
    return [
        _Program("alertmanager", am, "alertmanager.yml", (
            am, f"--config.file={d / 'alertmanager.yml'}", f"--storage.path={d / 'alertmanager'}",
            f"--web.listen-address={me}:{ALERTMANAGER_PORT}", "--cluster.listen-address=",
        ), alertmanager_url(state_dir)),
        _Program("prometheus", prom, "prometheus.yml", (
            prom, f"--config.file={d / 'prometheus.yml'}", f"--storage.tsdb.path={d / 'data'}",
            f"--storage.tsdb.retention.time={RETENTION}", f"--web.listen-address={me}:{PROMETHEUS_PORT}",
            "--web.enable-lifecycle",
        ), prometheus_url(state_dir)),
    ]


def _pid(d: Path, prog: _Program) -> int | None:
    """The pid of our running ``prog`` (None: not running, a stale pid file, another process)."""
    try:
        pid = int((d / f"{prog.name}.pid").read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ValueError, IndexError, ProcessLookupError):
        return None
    ours = cmdline and cmdline[0] == prog.binary.encode() and f"--config.file={d / prog.config}".encode() in cmdline
    return pid if ours else None


def _request(url: str, *, method: str = "GET", timeout: float = 2.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def _wait_ready(d: Path, prog: _Program, pid: int) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        with contextlib.suppress(OSError):
            if _request(f"{prog.url}/-/ready")[0] == 200:
                return
        if not Path(f"/proc/{pid}").exists() or time.monotonic() > deadline:
            log = (d / f"{prog.name}.log").read_text(errors="replace")[-1500:]
            raise errors.EmbeddedError(f"{prog.name} did not become ready on {prog.url}:\n{log}")
        time.sleep(0.05)


def _stop(pid: int, timeout: float = 10.0) -> None:
    processes.stop(pid, timeout)


def _ensure(d: Path, prog: _Program, config: str) -> str:
    """Run ``prog`` with ``config``: ``"running"`` (unchanged), ``"reloaded"`` or ``"started"``."""
    wanted = hashlib.sha256(json.dumps(prog.argv).encode()).hexdigest()
    mark = d / f"{prog.name}.argv.sha256"
    path = d / prog.config
    pid = _pid(d, prog)
    if pid is not None and mark.exists() and mark.read_text() == wanted:
        if path.exists() and path.read_text() == config:
            return "running"
        path.write_text(config)
        status, body = _request(f"{prog.url}/-/reload", method="POST", timeout=10)
        if status != 200:
            raise errors.EmbeddedError(f"{prog.name} refused its new configuration {path}: {body.decode()[:500]}")
        return "reloaded"
    if pid is not None:
        _stop(pid)
    path.write_text(config)
    # detached (own session, parent init): it outlives this process, no Popen to reap
    launch = 'log="$1"; shift; setsid "$@" </dev/null >>"$log" 2>&1 & echo $!'
    done = subprocess.run(["sh", "-c", launch, "launch", str(d / f"{prog.name}.log"), *prog.argv],
                          cwd=d, capture_output=True, text=True, check=True, timeout=10)
    pid = int(done.stdout.strip())
    (d / f"{prog.name}.pid").write_text(f"{pid}\n")
    try:
        _wait_ready(d, prog, pid)
    except errors.EmbeddedError:
        _stop(pid)
        raise
    mark.write_text(wanted)
    return "started"


def up(
    servers_: Iterable[ServerSpec], state_dir: Path, *, scrape_interval: str = SCRAPE_INTERVAL,
    controller: str | None = None, rules: Path = RULES,
) -> dict[str, str]:
    """Run the environment's Alertmanager and Prometheus with the configuration of
    ``servers_`` (idempotent; a changed configuration is reloaded, not restarted) and the
    rule file ``rules``; returns ``{program: "running"|"reloaded"|"started"}``."""
    d = directory(state_dir)
    progs = _programs(state_dir)
    configs = {
        "alertmanager": yaml.safe_dump(alertmanager_config(), sort_keys=False),
        "prometheus": yaml.safe_dump(prometheus_config(servers_, state_dir, scrape_interval=scrape_interval,
                                                       controller=controller, rules=rules), sort_keys=False),
    }
    with concurrent.futures.ThreadPoolExecutor(len(progs)) as pool:
        futures = {p.name: pool.submit(_ensure, d, p, configs[p.name]) for p in progs}
        return {name: f.result() for name, f in futures.items()}


def down(state_dir: Path) -> list[str]:
    """Stop the environment's Prometheus and Alertmanager (data kept); the names stopped."""
    d = Path(state_dir).resolve() / "prometheus"
    if not d.is_dir():
        return []
    stopped = []
    for prog in _known_programs(d):
        pid = _pid(d, prog)
        if pid is not None:
            _stop(pid)
            stopped.append(prog.name)
        (d / f"{prog.name}.pid").unlink(missing_ok=True)
        (d / f"{prog.name}.argv.sha256").unlink(missing_ok=True)
    return stopped


def _known_programs(d: Path) -> list[_Program]:
    """The programs as their pid files recorded them (works without the binaries installed)."""
    found = []
    for name, config in (("alertmanager", "alertmanager.yml"), ("prometheus", "prometheus.yml")):
        try:
            pid = int((d / f"{name}.pid").read_text().split()[0])
            binary = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        except (FileNotFoundError, ValueError, IndexError, ProcessLookupError, UnicodeDecodeError):
            continue
        found.append(_Program(name, binary, config, (), ""))
    return found


def status(state_dir: Path) -> dict[str, Any]:
    """``{"prometheus": {"url", "running"}, "alertmanager": {...}, "rules": path}`` for ``env status``."""
    d = Path(state_dir).resolve() / "prometheus"
    running = {p.name for p in _known_programs(d) if _pid(d, p) is not None} if d.is_dir() else set()
    return {
        "prometheus": {"url": prometheus_url(state_dir), "running": "prometheus" in running},
        "alertmanager": {"url": alertmanager_url(state_dir), "running": "alertmanager" in running},
        "rules": str(RULES),
    }
