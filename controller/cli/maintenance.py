"""``tenantctl maintenance announce|list|cancel``: emergency maintenance windows (OPS-2).

A region's regular window is in its document (``Region.spec.maintenance``); an emergency
one is announced here at least 24 hours ahead (``state.notices`` checks the rule and
records it), with an event naming who and why. Inside it the region's disruptive
changes run as in the regular window; ``status`` and ``maintenance list`` show what is
announced. Exit 0 done, 2 refused (nothing recorded). Thin: the rule and the records
are ``controller.state.notices``'s.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from controller import errors
from controller.cli import common

if TYPE_CHECKING:
    from controller.state.notices import Notice

maintenance_app = typer.Typer(help="Emergency maintenance windows, announced 24 h ahead (OPS-2).",
                              no_args_is_help=True)

_DURATION = re.compile(r"^(?P<n>[1-9][0-9]{0,3})(?P<unit>[mh])$")


def _when(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        common.fail(errors.TenantctlError(f"--start: expected an ISO-8601 time with its zone "
                                          f"(e.g. 2026-12-03T01:00:00Z), got {text!r}"), 2)
        raise AssertionError
    return value.astimezone(dt.UTC)


def _duration(text: str) -> dt.timedelta:
    m = _DURATION.match(text)
    if m is None:
        common.fail(errors.TenantctlError(f"--duration: expected minutes or hours (e.g. 90m, 2h), got {text!r}"), 2)
        raise AssertionError
    n = int(m["n"])
    return dt.timedelta(minutes=n) if m["unit"] == "m" else dt.timedelta(hours=n)


@maintenance_app.command("announce")
def announce(
    files: common.Files,
    region: Annotated[str, typer.Argument(help="the region whose servers are maintained")],
    start: Annotated[str, typer.Option("--start", help="when it starts (ISO-8601 with its zone), >= 24 h from now")],
    reason: Annotated[str, typer.Option("--reason", help="why (customers are told)")],
    duration: Annotated[str, typer.Option("--duration", help="how long: 90m, 2h (at most 12 h)")] = "1h",
) -> None:
    """Announce an emergency maintenance window of REGION: its disruptive changes (PHP
    version changes) run inside it as in its regular window."""
    from controller.state import events, notices

    ds = common.load(files)
    if region not in ds.regions:
        common.fail(errors.UnknownObject(f"unknown region {region!r} (regions: {', '.join(sorted(ds.regions))})"), 2)
    begin = _when(start)
    end = begin + _duration(duration)
    store = common.open_store(readonly=False)
    assert store is not None
    with store:
        try:
            notice = notices.announce(store, region, begin, end, now=common.now(), actor=common.actor(), reason=reason)
        except notices.BadNotice as exc:
            common.fail(exc, 2)
            raise AssertionError from None
        events.record(store, actor=notice.actor, action="maintenance-announced", subject="*",
                      message=f"emergency maintenance of {region}: {notice.start:%Y-%m-%dT%H:%MZ} to "
                              f"{notice.end:%Y-%m-%dT%H:%MZ} (OPS-2): {notice.reason}",
                      data=notice.as_dict())
    sys.stdout.write(f"emergency maintenance of {region} announced: {notice.start:%Y-%m-%dT%H:%MZ} to "
                     f"{notice.end:%Y-%m-%dT%H:%MZ}; its disruptive changes run then\n")
    if ds.regions[region].maintenance is None:
        sys.stderr.write(f"note: {region} has no regular maintenance window: nothing of it waits for one\n")


@maintenance_app.command("cancel")
def cancel(
    region: Annotated[str, typer.Argument(help="the region")],
    start: Annotated[str, typer.Option("--start", help="the announced window's start (ISO-8601 with its zone)")],
) -> None:
    """Withdraw an announced emergency window."""
    from controller.state import events, notices

    begin = _when(start)
    store = common.open_store(readonly=False)
    assert store is not None
    with store:
        if not notices.cancel(store, region, begin):
            common.fail(errors.UnknownObject(f"no emergency window of {region} starts at {begin.isoformat()}"), 2)
        events.record(store, actor=common.actor(), action="maintenance-cancelled", subject="*",
                      message=f"emergency maintenance of {region} at {begin:%Y-%m-%dT%H:%MZ} cancelled")


@maintenance_app.command("list")
def list_(output: common.Output = "table") -> None:
    """Emergency windows announced and not over yet, soonest first."""
    from controller.state import notices

    store = common.open_store(readonly=True)
    try:
        found = notices.pending(store, common.now())
    finally:
        if store is not None:
            store.close()
    if output == "json":
        json.dump({"emergencyWindows": [n.as_dict() for n in found]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    for line in lines(found):
        sys.stdout.write(line + "\n")
    if not found:
        sys.stdout.write("no emergency maintenance announced\n")


def lines(found: Sequence[Notice]) -> list[str]:
    """One line per announced window (``status`` prints them too)."""
    return [f"emergency maintenance: {n.region} {n.start:%Y-%m-%dT%H:%MZ} to {n.end:%Y-%m-%dT%H:%MZ} "
            f"(announced {n.announced_at:%Y-%m-%dT%H:%MZ} by {n.actor}: {n.reason})" for n in found]
