"""``status -f PATH``: the database engines' versions (PLAT-5) come from the servers'
releases in the desired state; without it, only PHP's (from the effective spec)."""

from __future__ import annotations

from cli.conftest import Cli


def test_status_with_the_documents_names_every_version_a_subscription_runs(cli: Cli) -> None:
    cli.apply()
    docs = {s["name"]: s for s in cli("status", "-o", "json", "-f", str(cli.desired)).json()["subscriptions"]}
    assert docs["vol-de-nuit.example.org"]["versions"] == {"php": "8.4", "mariadb": "11.8", "postgresql": "17"}
    bare = {s["name"]: s for s in cli("status", "-o", "json").json()["subscriptions"]}
    assert bare["vol-de-nuit.example.org"]["versions"] == {"php": "8.4"}
