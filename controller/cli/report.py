"""``tenantctl report usage`` (issue 12 item 5, OPS-4).

Rows per subscription and period (day, ISO week from Monday, calendar month; UTC):
requests and bytes summed from the stored daily traffic, disk and database sizes as the
largest daily maximum of the period; then one total row per customer and period. The
figures come from the state store only (``controller.state.usage``): the logs they were
read from may be rotated away. ``--collect`` first reads what the servers gained since
the last collection (and measures web spaces and databases now).
"""

from __future__ import annotations

import csv
import datetime as dt
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from controller.cli import common, output

if TYPE_CHECKING:
    from controller.state import store as state_store
    from controller.state import usage

report_app = typer.Typer(help="Reports: usage per subscription and customer (OPS-4).", no_args_is_help=True)

FORMATS = ("table", "json", "csv")
#: how far back a report goes without ``--since``
DEFAULT_SPAN = {"day": dt.timedelta(days=30), "week": dt.timedelta(weeks=12), "month": dt.timedelta(days=365)}
TOTAL = "*"
COLUMNS = ("customer", "domain", "period", "requests", "bytes", "diskMB", "databasesMB")


@dataclass
class Line:
    """One row of the report: a subscription's period, or a customer's total (domain ``*``)."""

    customer: str
    domain: str
    period: dt.date
    requests: int = 0
    bytes: int = 0
    disk_mb: float | None = None
    databases_mb: float | None = None

    def doc(self) -> dict[str, Any]:
        return {"customer": self.customer, "domain": self.domain, "period": self.period.isoformat(),
                "requests": self.requests, "bytes": self.bytes, "diskMB": self.disk_mb,
                "databasesMB": self.databases_mb}


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _add(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else round(a + b, 3)


def summarise(rows: Iterable[usage.Row], customers: Mapping[str, str], period: str,
              customer: str | None = None) -> tuple[list[Line], list[Line]]:
    """(subscription lines, customer totals), sorted by customer, domain, period
    (``usage.period_start``: the periods the state store sums traffic over)."""
    from controller.state import usage

    subs: dict[tuple[str, str, dt.date], Line] = {}
    for r in rows:
        owner = customers.get(r.subscription, "")
        if customer is not None and owner != customer:
            continue
        key = (owner, r.subscription, usage.period_start(r.day, period))
        line = subs.setdefault(key, Line(*key))
        line.requests += r.requests
        line.bytes += r.bytes
        line.disk_mb = _max(line.disk_mb, r.disk_mb)
        line.databases_mb = _max(line.databases_mb, r.database_mb)
    totals: dict[tuple[str, dt.date], Line] = {}
    for (owner, _sub, start), line in sorted(subs.items()):
        t = totals.setdefault((owner, start), Line(owner, TOTAL, start))
        t.requests += line.requests
        t.bytes += line.bytes
        t.disk_mb = _add(t.disk_mb, line.disk_mb)
        t.databases_mb = _add(t.databases_mb, line.databases_mb)
    return [subs[k] for k in sorted(subs)], [totals[k] for k in sorted(totals)]


def human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError  # pragma: no cover


def _mb(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def table(lines: Sequence[Line], totals: Sequence[Line], width: int | None) -> list[str]:
    """Subscriptions, each customer's total after its subscriptions."""
    by_customer: dict[str, list[Line]] = {}
    for line in lines:
        by_customer.setdefault(line.customer, []).append(line)
    rows: list[list[str]] = []
    for owner in sorted({t.customer for t in totals}):
        for line in [*by_customer.get(owner, []), *(t for t in totals if t.customer == owner)]:
            rows.append([line.customer, line.domain if line.domain != TOTAL else "(total)", line.period.isoformat(),
                         str(line.requests), human(line.bytes), _mb(line.disk_mb), _mb(line.databases_mb)])
    headers = ["customer", "domain", "period", "requests", "traffic", "disk MB", "databases MB"]
    return output.render(headers, rows, width, flexible=[1, 0])


def write_csv(lines: Sequence[Line], totals: Sequence[Line], out: Any) -> None:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    for line in [*lines, *totals]:
        d = line.doc()
        w.writerow(["" if d[c] is None else d[c] for c in COLUMNS])


def _collect(files: list[Path], store: state_store.Store) -> int:
    """Databases measured now (the db driver), then every web server's logs and web
    spaces; a summary on stderr. Returns the number of servers that failed."""
    from controller.drivers import base, context
    from controller.drivers.usage import collect
    from controller.reconcile import engine

    ds = common.load(files)
    now = common.now()
    drivers = common.drivers_for(ds)
    failed = 0
    try:
        planned = engine.plan(ds, now, store, drivers)
        for name, driver in drivers.items():
            if not isinstance(driver, base.Measuring):
                continue
            changes = [base.Change(n, "ensure", drivers[name].slice(s.typed)) for n, s in planned.subscriptions.items()
                       if s.placement.server is not None]
            try:
                measured = driver.usage(changes) if changes else {}
            except Exception as exc:  # a server down: the report still shows what is stored
                sys.stderr.write(f"tenantctl: measuring {name}: {exc}\n")
                failed += 1
                continue
            with store.transaction():
                for sub, values in measured.items():
                    store.put_usage(sub, values)
    finally:
        common.close_drivers(drivers)
    collector = collect.Collector(context.Context.of(ds, common.state_dir()), store)
    try:
        report = collector.run(now, disk=True)
    finally:
        collector.close()
    for server, err in sorted(report.failed.items()):
        sys.stderr.write(f"tenantctl: usage on {server}: {err}\n")
    for sub, note in sorted(report.notes.items()):
        sys.stderr.write(f"tenantctl: {sub}: {note}\n")
    sys.stderr.write(f"collected: {report.subscriptions} subscription(s) on {len(report.servers)} server(s), "
                     f"{report.lines} log line(s), {human(report.read)} read, {report.seconds:.2f} s\n")
    return failed + len(report.failed)


@report_app.command("usage")
def usage_cmd(
    files: Annotated[list[Path] | None, typer.Option("-f", "--file", help="desired-state file or directory "
                                                     "(repeatable; needed by --collect)")] = None,
    period: Annotated[str, typer.Option("--period", help="day, week (from Monday) or month; UTC")] = "day",
    customer: common.Customer = None,
    since: Annotated[str | None, typer.Option("--since", help="first day (YYYY-MM-DD); default 30 days, "
                                              "12 weeks or 12 months back")] = None,
    fmt: Annotated[str, typer.Option("-o", "--output", help="table, json or csv")] = "table",
    collect_first: Annotated[bool, typer.Option("--collect", help="read the servers' logs and measure disks "
                                                "and databases first")] = False,
) -> None:
    """Traffic (requests, bytes), disk and database sizes per subscription and customer
    (OPS-4). Exit 0; 1 when --collect could not reach every server (the report shows what
    is stored); 2 bad input."""
    from controller.state import usage

    if period not in usage.PERIODS or fmt not in FORMATS:
        sys.stderr.write(f"tenantctl: --period expects {', '.join(usage.PERIODS)}; -o expects {', '.join(FORMATS)}\n")
        raise typer.Exit(2)
    today = usage.utc_day(common.now())
    try:
        first = dt.date.fromisoformat(since) if since else today - DEFAULT_SPAN[period]
    except ValueError:
        sys.stderr.write(f"tenantctl: --since expects YYYY-MM-DD, got {since!r}\n")
        raise typer.Exit(2) from None
    first = usage.period_start(first, period)
    failed = 0
    if collect_first:
        if not files:
            sys.stderr.write("tenantctl: --collect needs the desired state (-f) to reach the servers\n")
            raise typer.Exit(2)
        store = common.open_store(readonly=False)
        assert store is not None
        with store:
            failed = _collect(files, store)
    store = common.open_store(readonly=True)
    if store is None:
        rows: list[usage.Row] = []
        owners: dict[str, str] = {}
    else:
        with store, store.snapshot():
            rows = usage.rows(store, first)
            owners = {r.name: r.customer for r in store.list_subscriptions(include_deleted=True)}
    lines, totals = summarise(rows, owners, period, customer)
    if fmt == "json":
        output.print_json({"period": period, "since": first.isoformat(), "subscriptions": [x.doc() for x in lines],
                           "customers": [x.doc() for x in totals]})
    elif fmt == "csv":
        write_csv(lines, totals, sys.stdout)
    else:
        for text in table(lines, totals, output.terminal_width()):
            typer.echo(text)
        if not lines:
            typer.echo(f"no usage recorded since {first.isoformat()} (tenantctl run collects it; or --collect)")
    if failed:
        raise typer.Exit(1)
