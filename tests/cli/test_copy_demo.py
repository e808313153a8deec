"""``tenantctl copy`` and ``tenantctl demo`` (PLAT-2, PLAT-3) in planning mode: the
document of a test copy, written for the ops engineer to add (never into their files),
loads and plans at half the source's resources; refusals exit 2 and change nothing."""

from __future__ import annotations

import yaml

from .conftest import Cli

SOURCE, COPY = "mermoz.example.org", "mermoz.example.org.test"
#: the examples' server of Debian 13 (trixie)
TRIXIE = "ap-southeast-2"


def test_copy_writes_a_document_that_plans_at_half_the_sources_resources(cli: Cli) -> None:
    before = {p.name: p.read_text() for p in cli.desired.iterdir()}
    out = cli("copy", "-f", str(cli.desired), SOURCE, "--as", COPY)
    assert {p.name: p.read_text() for p in cli.desired.iterdir()} == before  # no file of theirs edited
    doc = yaml.safe_load(out.out)
    assert doc["metadata"] == {"name": COPY} and doc["kind"] == "Subscription"
    assert doc["spec"]["copyOf"] == SOURCE and "plan" not in doc["spec"]
    assert doc["spec"]["databases"] == [{"name": "mermoz_app", "engine": "mariadb"}]
    assert doc["spec"]["sites"] == [{"name": "blog"}]  # subdomains, not the source's alias domains

    target = cli.desired.parent / "copy.yaml"
    cli("copy", "-f", str(cli.desired), SOURCE, "--as", COPY, "--out", str(target))
    assert yaml.safe_load(target.read_text()) == doc
    target.rename(cli.desired / "copy.yaml")
    plan = cli.plan()
    src, cp = plan[SOURCE], plan[COPY]
    assert cp["plan"] == src["plan"] and cp["effective"]["sandbox"] == {"kind": "copy", "source": SOURCE}
    assert cp["effective"]["resources"]["diskMB"] * 2 <= src["effective"]["resources"]["diskMB"]
    assert cp["effective"]["backup"]["content"] == "none"


def test_a_trial_copy_asks_the_version_to_try_on_top_of_the_sources_settings(cli: Cli) -> None:
    trial = "mermoz.example.org.php84"
    out = cli("copy", "-f", str(cli.desired), SOURCE, "--as", trial, "--trial", "8.4", "--out",
              str(cli.desired / "trial.yaml"))
    assert "a trial of PHP 8.4" in (cli.desired / "trial.yaml").read_text() and "trial.yaml" in out.err
    plan = cli.plan()
    src, cp = plan[SOURCE], plan[trial]
    assert cp["effective"]["sandbox"]["kind"] == "copy" and src["effective"]["hosting"]["php"]["version"] == "8.2"
    # eu-west's servers offer 8.2 only: the trial asks 8.4 (SYNC-3), everything else is the source's
    assert {"property": "hosting.php.version", "planValue": "8.4", "availableValue": "8.2"} in cp["conflicts"], cp
    assert cp["effective"]["hosting"]["php"]["handler"] == src["effective"]["hosting"]["php"]["handler"]
    assert "expected a PHP version" in cli("copy", "-f", str(cli.desired), SOURCE, "--as", "x.test", "--trial", "8.4;rm",
                                           check=2).err


def test_a_trial_on_a_server_of_the_newer_release_tries_its_versions_before_a_move(cli: Cli) -> None:
    trial = "mermoz.example.org.trixie"
    out = cli("copy", "-f", str(cli.desired), SOURCE, "--as", trial, "--trial", "8.4", "--on", TRIXIE,
              "--out", str(cli.desired / "trial.yaml"))
    text = (cli.desired / "trial.yaml").read_text()
    assert "a trial of PHP 8.4 and a trial on ap-southeast-2 (Debian trixie: PHP 8.4, MariaDB 11.8, " \
           "PostgreSQL 17)" in text and "trial.yaml" in out.err
    doc = yaml.safe_load(text)["spec"]
    assert (doc["server"], doc["region"]) == (TRIXIE, "ap-southeast")
    cp = cli.plan()[trial]
    # placed on the trixie server, which offers 8.4: no conflict (SYNC-3), the source's databases with it
    assert (cp["server"], cp["sync"], cp["conflicts"]) == (TRIXIE, "synced", []), cp
    assert cp["effective"]["hosting"]["php"]["version"] == "8.4"
    assert "no server of that name" in cli("copy", "-f", str(cli.desired), SOURCE, "--as", "x.test",
                                           "--on", "nowhere-1", check=2).err


def test_copy_and_demo_refuse_what_they_cannot_do(cli: Cli) -> None:
    f = ["-f", str(cli.desired)]
    assert "exists already" in cli("copy", *f, SOURCE, "--as", "shop.example.com", check=2).err
    assert "no subscription 'nosuch.example.org'" in cli("copy", *f, "nosuch.example.org", "--as", COPY,
                                                         check=2).err
    assert "usage" in cli("copy", *f, SOURCE, check=2).err
    assert "is no test copy" in cli("copy", *f, "refresh", SOURCE, check=2).err
    assert "is no demo" in cli("demo", "reset", *f, SOURCE, check=2).err
