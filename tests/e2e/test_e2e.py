"""The whole product as a user runs it, on real servers (issue 7 "Done when", issue 8 point 9).

1. ``plan``, ``apply``, ``status``, ``urls`` (HTTPS through the embedded CA), ``events``
   with the real drivers;
2. ``tenantctl run`` stays alive through a stopped server, a stopped MariaDB and a
   stopped PowerDNS, reports each fault (events, conditions, metrics) and converges once
   each is fixed;
3. a server replaced by a fresh container: ``status --live`` shows it, the next ``apply``
   re-creates every tenant there and the sites answer again.
"""

from __future__ import annotations

import shlex
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Iterator

import pytest

from controller.drivers import naming

from .conftest import CLI, E2E, curl, wait_for

pytestmark = pytest.mark.embedded

ALPHA, BETA, GAMMA = "alpha.e2e.example.org", "beta.e2e.example.org", "gamma.e2e.example.org"
CONCERNS = ("web", "php", "db", "dns", "tls")
PHP = b"<?php echo ini_get('memory_limit'), ' ', $_SERVER['SERVER_NAME'], \"\\n\";\n"


def converged(e2e: E2E) -> bool:
    return all(all(it["concerns"][c] == "provisioned" for c in CONCERNS)
               for it in e2e.status().values() if it["state"] != "deleted")


def put_page(e2e: E2E, server: str, domain: str) -> None:
    """An index.php that prints the effective memory_limit, owned by the tenant."""
    user = naming.system_user(domain)
    path = f"/srv/www/{domain}/httpdocs/index.php"
    script = f"cat > {shlex.quote(path)} && chown {shlex.quote(user)}: {shlex.quote(path)}"
    done = e2e.on(server, "sh", "-c", script, stdin=PHP)
    assert done.returncode == 0, done.error


def https(e2e: E2E, domain: str, ip: str) -> str:
    return curl(f"https://{domain}/", f"{domain}:443:{ip}", cacert=e2e.state / "pebble" / "ca-bundle.pem")


def test_plan_apply_status_urls_and_events_with_the_real_drivers(e2e: E2E) -> None:
    assert e2e("plan", *e2e.files(), "--detailed-exitcode", check=2).rc == 2
    e2e("apply", *e2e.files())
    status = e2e.status()
    assert set(status) == {ALPHA, BETA, GAMMA}
    for name, it in status.items():
        assert {c: it["concerns"][c] for c in CONCERNS} == dict.fromkeys(CONCERNS, "provisioned"), (
            name, it["conditions"])
    lines = e2e("urls").out.splitlines()
    assert sum(1 for line in lines if line.startswith("https://")) == 3, lines
    for line in lines:
        url, command = line.split("  ", 1)
        argv = shlex.split(command)
        out = subprocess.run([argv[0], "-sS", "--fail", "--max-time", "10", *argv[1:]],
                             capture_output=True, text=True, timeout=20)
        assert out.returncode == 0 and "Upload your files to" in out.stdout, (url, out.stderr)
    e2e("plan", *e2e.files(), "--detailed-exitcode", check=0)
    evs = e2e("events", "-o", "json", "--limit", "100000").json()
    created = {(e["subject"], e["concern"]) for e in evs if e["action"] == "create" and e["concern"]}
    assert {(ALPHA, c) for c in CONCERNS} <= created
    runs = e2e("events", "--runs", "-o", "json").json()
    assert runs and all(r["finishedAt"] for r in runs)


@pytest.fixture
def running(e2e: E2E) -> Iterator[tuple[subprocess.Popen[str], str]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (e2e.state / "run.log").open("w")
    proc = subprocess.Popen([CLI, "run", *e2e.files(), "--resync", "3", "--metrics-addr", f"127.0.0.1:{port}"],
                            env=e2e.env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc, f"http://127.0.0.1:{port}/metrics"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        log.close()


def metric(url: str, series: str) -> float | None:
    """The value of one series (``name`` or ``name{labels}`` exactly as exposed), or of
    the sum of a family's series when only its name is given and it has labels."""
    with urllib.request.urlopen(url, timeout=5) as r:
        lines = [ln for ln in r.read().decode().splitlines() if ln and not ln.startswith("#")]
    exact = [ln for ln in lines if ln.rsplit(" ", 1)[0] == series]
    if exact:
        return float(exact[0].rsplit(" ", 1)[1])
    family = [ln for ln in lines if ln.startswith(series + "{")]
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in family) if family else None


def events_of(e2e: E2E, action: str) -> list[dict[str, object]]:
    return [e for e in e2e("events", "-o", "json", "--action", action, "--limit", "100000").json()]


def test_run_survives_a_stopped_server_mariadb_and_powerdns(
    e2e: E2E, running: tuple[subprocess.Popen[str], str]
) -> None:
    proc, url = running
    wait_for(lambda: metric(url, "tenantctl_desired_state_valid") == 1.0, 60, "the first load")
    ip_b = e2e.status()[GAMMA]["ip"]
    put_page(e2e, "e2e-b", GAMMA)
    assert https(e2e, GAMMA, ip_b).startswith("128M")

    # 1. a whole server down: the loop stays up, says so, and catches up when it is back
    e2e.docker("stop", "-t", "2", e2e.container("e2e-b"))
    wait_for(lambda: metric(url, 'tenantctl_server_reachable{server="e2e-b"}') == 0.0, 60, "e2e-b unreachable")
    e2e.edit("tenants.yaml", "settings: {memory_limit: 128M}", "settings: {memory_limit: 160M}")
    wait_for(lambda: e2e.status()[GAMMA]["concerns"]["php"] == "failed", 90, "gamma's php failing")
    assert proc.poll() is None, "run died while a server was down"
    failed = [e for e in events_of(e2e, "failed") if e["subject"] == GAMMA]
    assert failed and "e2e-b" in str(failed[-1]["message"]) + str(failed[-1]["concern"])
    e2e("env", "up", *e2e.files(), timeout=900)  # starts it again (same container, same data)
    wait_for(lambda: converged(e2e), 180, "convergence after e2e-b came back")
    wait_for(lambda: https(e2e, GAMMA, ip_b).startswith("160M"), 60, "gamma serving the new memory_limit")
    assert metric(url, 'tenantctl_server_reachable{server="e2e-b"}') == 1.0

    # 2. MariaDB down: a new database fails, is retried, and is created once it is back
    assert e2e.on("e2e-a", "service", "mariadb", "stop").returncode == 0
    e2e.edit("tenants.yaml", "databases: [{name: alpha_app, engine: mariadb}]",
             "databases: [{name: alpha_app, engine: mariadb}, {name: alpha_more, engine: mariadb}]")
    wait_for(lambda: e2e.status()[ALPHA]["concerns"]["db"] == "failed", 90, "alpha's db failing")
    cond = {c["type"]: c for c in e2e.status()[ALPHA]["conditions"]}["DbReady"]
    assert cond["status"] == "False" and cond["message"]
    assert proc.poll() is None, "run died while MariaDB was down"
    assert e2e.on("e2e-a", "service", "mariadb", "start").returncode == 0
    wait_for(lambda: converged(e2e), 180, "convergence after MariaDB came back")
    creds = e2e("db", "credentials", ALPHA, "alpha_more", "-o", "json", check=None)
    assert creds.rc == 0, creds.err

    # 3. PowerDNS down: the zone change fails, tls is not even tried, then all converge
    assert e2e.on("e2e-a", "service", "pdns", "stop").returncode == 0
    e2e.edit("tenants.yaml", "metadata: {name: beta.e2e.example.org}\nspec:\n",
             "metadata: {name: beta.e2e.example.org}\nspec:\n  sites: [{name: www2}]\n")
    wait_for(lambda: e2e.status()[BETA]["concerns"]["dns"] == "failed", 90, "beta's dns failing")
    assert proc.poll() is None, "run died while PowerDNS was down"
    assert e2e.on("e2e-a", "service", "pdns", "start").returncode == 0
    wait_for(lambda: converged(e2e), 240, "convergence after PowerDNS came back")
    assert metric(url, "tenantctl_reconcile_total") is not None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def test_a_replaced_server_is_seen_and_re_ensured(e2e: E2E) -> None:
    e2e("apply", *e2e.files())
    ip_a = e2e.status()[ALPHA]["ip"]
    assert "Upload your files to" in https(e2e, ALPHA, ip_a)
    # the machine at e2e-a's address is replaced by a fresh one: no tenants, new marker
    e2e.docker("rm", "-f", "-v", e2e.container("e2e-a"))
    e2e("env", "up", *e2e.files(), timeout=900)
    live = e2e("status", "--live", *e2e.files(), "-o", "json").json()
    assert live["servers"]["e2e-a"]["state"] == "replaced", live["servers"]
    drifted = {it["name"] for it in live["subscriptions"] if "drifted" in it["concerns"].values()}
    assert {ALPHA, BETA} <= drifted, live["warnings"]
    done = e2e("apply", *e2e.files())
    assert "server e2e-a was replaced or wiped" in done.err
    assert converged(e2e)
    assert "Upload your files to" in https(e2e, ALPHA, ip_a)
    assert "Upload your files to" in https(e2e, BETA, e2e.status()[BETA]["ip"])
    replaced = events_of(e2e, "server-replaced")
    assert [e["subject"] for e in replaced] == ["e2e-a"]


def test_every_kind_of_change_is_in_the_audit_log(e2e: E2E) -> None:
    """OPS-5, scripted: suspend, activate, a database dropped, a subscription (and its
    zone) deleted; each appears with its actor, subscription, concern and what changed."""
    e2e("apply", *e2e.files())
    e2e.edit("tenants.yaml", "metadata: {name: gamma.e2e.example.org}\nspec:\n",
             "metadata: {name: gamma.e2e.example.org}\nspec:\n  state: suspended\n  stateReason: nonpayment\n")
    e2e("apply", *e2e.files())
    e2e.edit("tenants.yaml", "  state: suspended\n  stateReason: nonpayment\n", "")
    e2e("apply", *e2e.files())
    e2e.edit("tenants.yaml", ", {name: alpha_more, engine: mariadb}]", "]")
    e2e("apply", *e2e.files())
    path = e2e.desired / "tenants.yaml"
    docs = path.read_text().split("\n---\n")
    path.write_text("\n---\n".join(d for d in docs if "name: gamma.e2e.example.org" not in d) + "\n")
    e2e("apply", *e2e.files())
    evs = e2e("events", "-o", "json", "--limit", "100000").json()

    def has(action: str, subject: str, concern: str | None, text: str = "") -> bool:
        return any(e["action"] == action and e["subject"] == subject and e["concern"] == concern
                   and text in str(e["message"]) and e["actor"].startswith("cli:") and e["run"] for e in evs)

    assert has("suspend", GAMMA, "web"), [e for e in evs if e["subject"] == GAMMA]
    assert has("activate", GAMMA, "web")
    assert has("update", ALPHA, "db", "-alpha_more"), [e for e in evs if e["subject"] == ALPHA]
    assert has("delete", GAMMA, "dns")
    assert has("delete", GAMMA, None)
    assert has("create", ALPHA, "tls")  # the certificate issued
    status = e2e.status()
    assert status[GAMMA]["state"] == "deleted"
    # the deleted zone is gone from the dns servers
    out = subprocess.run(["dig", "+short", "+norecurse", "@" + e2e.spec("e2e-b").address, GAMMA, "SOA"],
                         capture_output=True, text=True, timeout=20)
    assert out.stdout.strip() == ""
