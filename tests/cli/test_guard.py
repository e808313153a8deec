"""Issue 7 point 4: a truncated but valid file never means mass deletion.

``plan`` says the deletions are held, ``apply`` refuses (exit 4, nothing changed) until
``--allow-mass-delete``; a file that disappears counts as deletion of all it held."""

from __future__ import annotations

from .conftest import Cli


def truncate(cli: Cli, keep: int) -> None:
    path = cli.desired / "subscriptions.yaml"
    docs = path.read_text().split("\n---\n")
    path.write_text("\n---\n".join(docs[:keep]) + "\n")


def live(cli: Cli) -> int:
    return sum(1 for s in cli.status().values() if s["state"] != "deleted")


def test_a_truncated_file_is_refused_with_the_count_and_nothing_is_deleted(cli: Cli) -> None:
    cli.apply()
    before = cli("status", "-o", "json").out
    truncate(cli, 3)
    plan = cli("plan", "-f", str(cli.desired), "-o", "json").json()
    assert plan["deletionsHeld"] is True and len(plan["deletions"]) >= 8
    table = cli("plan", "-f", str(cli.desired))
    assert "HELD:" in table.out and "--allow-mass-delete" in table.out
    res = cli.apply(check=4)
    assert f"refused: {len(plan['deletions'])} deletions held" in res.err
    assert all(f"would delete {n}" in res.err for n in plan["deletions"])
    assert cli("status", "-o", "json").out == before, "a refused apply changed something"
    cli("apply", "-f", str(cli.desired), "--allow-mass-delete")
    assert live(cli) == 14 - len(plan["deletions"])


def test_a_vanished_file_counts_as_deleting_all_it_held(cli: Cli) -> None:
    cli.apply()
    (cli.desired / "subscriptions.yaml").unlink()
    # the subscriptions' customers and plans are still declared: the desired state is
    # valid, and says "delete all 14"
    res = cli.apply(check=4)
    assert "refused: 14 deletions held" in res.err
    assert live(cli) == 14


def test_the_threshold_is_configurable(cli: Cli) -> None:
    cli.apply()
    truncate(cli, 3)
    cli.env["TENANTCTL_MAX_DELETE"] = "50"
    cli.env["TENANTCTL_MAX_DELETE_PERCENT"] = "100"
    cli.apply()
    assert live(cli) < 14
    cli.env["TENANTCTL_MAX_DELETE"] = "many"
    res = cli.apply(check=None)
    assert res.rc != 0 and "TENANTCTL_MAX_DELETE" in res.err and "Traceback" not in res.err


def test_retry_now_needs_the_flag_for_names(cli: Cli) -> None:
    res = cli("apply", "-f", str(cli.desired), "hangar.example.com", check=2)
    assert "--retry-now" in res.err
    cli("apply", "-f", str(cli.desired), "--retry-now")
