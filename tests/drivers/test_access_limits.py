"""Issue 14 item 2: one FTP user more than the effective ``resources.ftpAccounts`` is
refused by ``validate`` and ``plan`` (exit 2, file:line of ``spec.access.ftpUsers``,
nothing applied), with the one rule the web driver also refuses with at apply
(``model.validate.ftp_accounts_over``). The limit the documents decide equals the one
``effective.compute`` makes (plan + add-ons, customisations), checked case by case."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from controller import effective, model
from controller.drivers.hosting import ftp
from controller.errors import InputError
from controller.model import validate

NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)

BASE = textwrap.dedent("""\
    apiVersion: tenantctl.io/v1
    kind: Region
    metadata: {name: lim-eu}
    spec: {timezone: Europe/Paris, backupCopiesTo: []}
    ---
    apiVersion: tenantctl.io/v1
    kind: Server
    metadata: {name: lim-eu-1}
    spec:
      region: lim-eu
      provider: docker
      address: 127.0.118.250
      ips: [{address: 127.0.118.250, type: shared}]
      roles: [web]
      offers: {php: {versions: ["8.2"], handlers: [fpm]}}
    ---
    apiVersion: tenantctl.io/v1
    kind: ServicePlan
    metadata: {name: two-ftp}
    spec:
      resources: {ftpAccounts: 2}
      hosting: {php: {handler: fpm, version: "8.2"}}
    ---
    apiVersion: tenantctl.io/v1
    kind: ServicePlan
    metadata: {name: no-limit-said}
    spec:
      hosting: {php: {handler: fpm, version: "8.2"}}
    ---
    apiVersion: tenantctl.io/v1
    kind: AddOnPlan
    metadata: {name: one-more-ftp}
    spec:
      resources: {ftpAccounts: 1}
    ---
    apiVersion: tenantctl.io/v1
    kind: AddOnPlan
    metadata: {name: unlimited-ftp}
    spec:
      resources: {ftpAccounts: unlimited}
    ---
    apiVersion: tenantctl.io/v1
    kind: Customer
    metadata: {name: lim-carol}
    spec: {email: carol@example.org}
    """)


def subscription(name: str, users: int, *, plan: str | None = "two-ftp", addons: tuple[str, ...] = (),
                 customizations: str = "") -> str:
    lines = ["---", "apiVersion: tenantctl.io/v1", "kind: Subscription", f"metadata: {{name: {name}}}", "spec:",
             "  customer: lim-carol", "  region: lim-eu"]
    if plan is not None:
        lines.append(f"  plan: {plan}")
    if addons:
        lines.append(f"  addons: [{', '.join(addons)}]")
    if customizations:
        lines.append(f"  customizations: {customizations}")
    if users:
        lines += ["  access:", "    ftpUsers:", *(f"      - {{name: u{i}}}" for i in range(users))]
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, *subs: str) -> Path:
    d = tmp_path / "desired"
    d.mkdir(exist_ok=True)
    (d / "base.yaml").write_text(BASE, encoding="utf-8")
    (d / "subs.yaml").write_text("".join(subs), encoding="utf-8")
    return d


CASES = [
    pytest.param(dict(users=2), None, id="at-the-plans-limit"),
    pytest.param(dict(users=3), "3 FTP users but the plan allows 2", id="one-over-the-plan"),
    pytest.param(dict(users=3, addons=("one-more-ftp",)), None, id="an-addon-adds-one-PLAN-3"),
    pytest.param(dict(users=4, addons=("one-more-ftp",)), "4 FTP users but the plan allows 3", id="one-over-plan-and-addon"),
    pytest.param(dict(users=9, addons=("one-more-ftp", "unlimited-ftp")), None, id="unlimited-addon-wins"),
    pytest.param(dict(users=9, plan="no-limit-said"), None, id="left-out-is-unlimited"),
    pytest.param(dict(users=9, plan=None), None, id="custom-without-limit"),
    pytest.param(dict(users=2, plan=None, customizations="{resources: {ftpAccounts: 1}}"),
                 "2 FTP users but the plan allows 1", id="custom-with-limit"),
    pytest.param(dict(users=3, customizations="{resources: {ftpAccounts: 3}}"), None, id="customised-raises-SYNC-2"),
    pytest.param(dict(users=2, addons=("one-more-ftp",), customizations="{resources: {ftpAccounts: 1}}"),
                 "2 FTP users but the plan allows 1", id="customised-lowers"),
]


@pytest.mark.parametrize(("sub", "refused"), CASES)
def test_validate_refuses_one_account_over_the_effective_limit(tmp_path: Path, sub: dict[str, Any],
                                                                refused: str | None) -> None:
    d = write(tmp_path, subscription("lim.example.org", **sub))
    if refused is None:
        model.load_desired([d])
        return
    with pytest.raises(InputError) as err:
        model.load_desired([d])
    [issue] = err.value.issues
    assert str(issue) == (f"{d / 'subs.yaml'}:{issue.line}: spec.access.ftpUsers: {refused} (resources.ftpAccounts): "
                          "remove an account or raise the limit (an add-on's ftpAccounts add up, PLAN-3)")
    lines = (d / "subs.yaml").read_text(encoding="utf-8").splitlines()
    assert lines[issue.line - 1].strip() == "ftpUsers:"


@pytest.mark.parametrize(("sub", "refused"), CASES)
def test_the_documents_limit_is_the_effective_one(tmp_path: Path, sub: dict[str, Any], refused: str | None) -> None:
    """The limit ``validate`` checks is what ``effective.compute`` makes of the same
    documents (both from the model's PLAN-3 rule): no second opinion on the fact."""
    del refused
    d = write(tmp_path, subscription("lim.example.org", **{**sub, "users": 0}))
    ds = model.load_desired([d])
    computed = effective.compute(ds, NOW)["lim.example.org"].item["effective"]["resources"]["ftpAccounts"]
    documents = validate.ftp_accounts_limit(ds, ds.subscriptions["lim.example.org"])
    assert (documents if documents is not None else "unlimited") == computed


def test_a_locked_subscription_without_its_own_value_is_left_to_the_effective_check(tmp_path: Path) -> None:
    """Locked (SYNC-2) on another value: its base is the state store's, not the plan's."""
    d = write(tmp_path, subscription("lim.example.org", 3, customizations="{hosting: {ssl: true}}"))
    ds = model.load_desired([d])
    assert validate.ftp_accounts_limit(ds, ds.subscriptions["lim.example.org"]) is None


@pytest.mark.parametrize(("users", "limit", "expected"), [
    pytest.param(3, 2, "3 FTP users but the plan allows 2 (resources.ftpAccounts)", id="over"),
    pytest.param(2, 2, None, id="at"),
    pytest.param(1, 0, "1 FTP users but the plan allows 0 (resources.ftpAccounts)", id="none-allowed"),
    pytest.param(50, "unlimited", None, id="unlimited"),
    pytest.param(50, None, None, id="undecided"),
])
def test_one_rule_for_validate_and_the_driver(users: int, limit: Any, expected: str | None) -> None:
    assert validate.ftp_accounts_over(users, limit) == expected
    driver = ftp.over_limit([ftp.User(name=f"u{i}", passwordRef=None) for i in range(users)], limit)
    assert driver == (None if expected is None else
                      f"{expected}; nothing of this subscription's web configuration was applied")


ROOT = Path(__file__).resolve().parents[2]


def run_cli(args: list[str], state_dir: Path) -> subprocess.CompletedProcess[str]:
    """``tenantctl ARGS`` as a user runs it, with its own state directory."""
    env = {**os.environ, "TENANTCTL_STATE_DIR": str(state_dir), "TENANTCTL_NOW": NOW.isoformat()}
    return subprocess.run([str(Path(sys.executable).parent / "tenantctl"), *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120, check=False)


ISSUE = re.compile(r"^(?P<file>\S+\.yaml):(?P<line>\d+): spec\.access\.ftpUsers: (?P<msg>.+)$", re.M)


def test_validate_plan_and_apply_exit_2_naming_the_line_and_apply_nothing(tmp_path: Path) -> None:
    """The real CLI as a process: validate, plan and apply refuse one account too many
    (exit 2, the subscription's file:line), the others pass alone; apply touches
    nothing (no state store, no credentials generated)."""
    good = subscription("ok.example.org", 2)
    bad = subscription("over.example.org", 3)
    d = write(tmp_path, good, bad)
    state = tmp_path / "state"
    state.mkdir()
    for cmd in (["validate"], ["plan"], ["apply"]):
        r = run_cli([*cmd, "-f", str(d)], state)
        assert r.returncode == 2, (cmd, r.stdout, r.stderr)
        [m] = ISSUE.finditer(r.stderr)
        assert m["file"].endswith("subs.yaml")
        line = (d / "subs.yaml").read_text(encoding="utf-8").splitlines()[int(m["line"]) - 1]
        assert line.strip() == "ftpUsers:"
        assert m["msg"].startswith("3 FTP users but the plan allows 2 (resources.ftpAccounts)")
        assert "tenantctl: 1 error(s) in the desired state" in r.stderr
    assert not (state / "state.db").exists() and not (state / "ftp-credentials").exists()
    (tmp_path / "alone").mkdir()
    r = run_cli(["validate", "-f", str(write(tmp_path / "alone", good))], state)
    assert r.returncode == 0, r.stderr
