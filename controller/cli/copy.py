"""``tenantctl copy`` (PLAT-2): test copies of a subscription.

* ``copy SUB --as NAME [--trial VERSION] [--on SERVER] [--out FILE]`` writes the Subscription
  document of a test copy of SUB (``spec.copyOf: SUB``; its customer, region, databases
  and subdomains; with ``--trial``, a customisation of the PHP version to try before a
  migration, PLAT-4; with ``--on``, placed on that server: the database engines of its
  Debian release tried before a move there) to FILE or stdout: the ops engineer adds it to the desired state (the CLI never edits their
  files); the next pass creates it (its own system user, databases and certificate; the
  source's plan and settings at half its resources, no backups, no SLA).
* ``copy refresh NAME`` fills test copy NAME from its source's newest backup, exactly
  (``controller.reconcile.clone``): exit 0 refreshed, 1 failed, 2 not a test copy of
  the desired state, not placed yet, or refreshed by another process now (nothing changed).

Registers ``copy`` on the CLI's ``app``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from controller import errors, model
from controller.cli import common
from controller.cli.common import app
from controller.model import values

#: a PHP version as plans name it (``--trial``)
_VERSION = re.compile(r"^[0-9]{1,2}\.[0-9]{1,2}$")


def document(ds: model.DesiredState, source: str, name: str, trial: str | None = None,
             on: str | None = None) -> dict[str, Any]:
    """The Subscription document of a test copy ``name`` of ``source`` (PLAT-2); with
    ``trial``, a trial of that PHP version (its own customisation on top of the
    source's settings: the version to migrate to, tried before the migration, PLAT-4);
    with ``on``, placed on that server (in its region): a trial of the database engines'
    versions of its Debian release before a move there (PLAT-4). Pure."""
    spec = ds.subscriptions.get(source)
    if spec is None:
        raise errors.TenantctlError(f"no subscription {source!r} in the desired state")
    if spec.copyOf is not None:
        raise errors.TenantctlError(f"{source} is itself a test copy (of {spec.copyOf}): copy {spec.copyOf}")
    try:
        name = values.domain_name(name)
    except ValueError as exc:
        raise errors.TenantctlError(f"--as: {exc}") from None
    if name == source or name in ds.subscriptions:
        raise errors.TenantctlError(f"--as {name}: a subscription of that name exists already")
    body: dict[str, Any] = {"customer": spec.customer, "region": spec.region, "copyOf": source}
    if on is not None:
        server = ds.servers.get(on)
        if server is None:
            raise errors.TenantctlError(f"--on {on}: no server of that name in the desired state "
                                        f"(servers: {', '.join(sorted(ds.servers))})")
        body["region"], body["server"] = server.region, on
    if trial is not None:
        if not _VERSION.match(trial):
            raise errors.TenantctlError(f"--trial {trial!r}: expected a PHP version such as 8.4")
        body["customizations"] = {"hosting": {"php": {"version": trial}}}
    if spec.databases:
        body["databases"] = [{"name": d.name, "engine": d.engine} for d in spec.databases]
    subdomains = [{"name": s.name} for s in spec.sites if s.type == "subdomain"]
    if subdomains:
        body["sites"] = subdomains
    return {"apiVersion": "tenantctl.io/v1", "kind": "Subscription", "metadata": {"name": name}, "spec": body}


@app.command("copy", context_settings={"help_option_names": ["-h", "--help"]})
def copy(
    files: common.Files,
    words: Annotated[list[str], typer.Argument(metavar="SUB | refresh NAME",
                                               help="the subscription to copy; or `refresh` and a test copy")],
    as_: Annotated[str | None, typer.Option("--as", help="the test copy's domain (typically SUB's name.test)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="write the document here (default: stdout)")] = None,
    trial: Annotated[str | None, typer.Option("--trial", metavar="VERSION",
                                              help="a trial copy running this PHP version (PLAT-2, PLAT-4)")] = None,
    on: Annotated[str | None, typer.Option("--on", metavar="SERVER",
                                           help="place the copy on SERVER: a trial of its release's MariaDB and "
                                                "PostgreSQL versions before a move there (PLAT-4)")] = None,
    output: common.Output = "table",
) -> None:
    """Write the document of a test copy of SUB (--as NAME.test) for you to add to the
    desired state; or fill test copy NAME from its source's newest backup (refresh)."""
    ds = common.load(files)
    if words[:1] == ["refresh"]:
        if len(words) != 2 or as_ is not None or out is not None or trial is not None or on is not None:
            common.fail(errors.TenantctlError("usage: tenantctl copy refresh NAME -f PATH"), 2)
        _refresh(ds, words[1], output)
        return
    if len(words) != 1 or as_ is None:
        common.fail(errors.TenantctlError("usage: tenantctl copy SUB --as NAME.test [--out FILE] -f PATH"), 2)
        return
    try:
        doc = document(ds, words[0], as_, trial, on)
    except errors.TenantctlError as exc:
        common.fail(exc, 2)
        return
    what = " and ".join(([f"a trial of PHP {trial}"] if trial else [])
                        + ([f"a trial on {on} ({_release(ds, on)})"] if on else [])) or "a test copy"
    text = f"# {what} (PLAT-2): add this document to the desired state, then apply\n" + yaml.safe_dump(
        doc, sort_keys=False, default_flow_style=False)
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        sys.stderr.write(f"wrote {out}: add it to the desired state, then `tenantctl apply`; "
                         f"`tenantctl copy refresh {doc['metadata']['name']}` fills it from {words[0]}\n")


def _release(ds: model.DesiredState, server: str) -> str:
    r = ds.servers[server].release
    return f"Debian {r.suite}: PHP {r.php}, MariaDB {r.mariadb}, PostgreSQL {r.postgresql}"


def _refresh(ds: model.DesiredState, name: str, output: str) -> None:
    from controller.reconcile import clone
    from controller.state import events

    spec = ds.subscriptions.get(name)
    if spec is None or spec.copyOf is None:
        common.fail(errors.TenantctlError(f"{name} is no test copy of the desired state (spec.copyOf)"), 2)
        return
    store = common.open_store(readonly=False)
    assert store is not None
    with store:
        with common.sandbox_pool(ds, store, name) as pool:
            try:
                done = clone.clone(store, pool, name, clone.Reference(spec.copyOf, None))
                error = None
            except clone.Busy as exc:  # another refresh of it now: nothing changed, nothing recorded
                common.fail(exc, 2)
                return
            except errors.TenantctlError as exc:
                done, error = None, str(exc)
        with store.transaction():
            events.record(store, actor=common.actor(), action="copy-refresh" if error is None else "failed",
                          subject=name, concern="copy",
                          message=(f"refreshed from {spec.copyOf} in {done.seconds:.1f} s" if done is not None
                                   else f"refresh from {spec.copyOf} failed: {error}"),
                          data={"source": spec.copyOf, "seconds": done.seconds if done else None,
                                "snapshots": list(done.snapshots) if done else []})
    if output == "json":
        json.dump({"subscription": name, "source": spec.copyOf, "ok": error is None, "error": error,
                   "seconds": done.seconds if done else None, "snapshots": list(done.snapshots) if done else [],
                   "missing": list(done.missing) if done else []}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif done is not None:
        sys.stdout.write(f"{name}: refreshed from {spec.copyOf} in {done.seconds:.1f} s ({', '.join(done.restored)})\n")
    else:
        sys.stdout.write(f"{name}: refresh from {spec.copyOf} FAILED: {error}\n")
    raise typer.Exit(0 if error is None else 1)
