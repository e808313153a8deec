"""Fencing of tenant databases (issue 10 item 4, DR-1): what the db driver checks on a
database server before it writes a subscription's databases and logins there.

The db driver talks to MariaDB and PostgreSQL directly, not through the agent, so the
highest generation seen per subscription is kept on the database server itself: the
table ``tenantctl.fence (subscription, generation)`` (MariaDB: database ``tenantctl``;
PostgreSQL: schema ``tenantctl`` of the ``postgres`` database the admin connection
uses). Neither is a tenant's name (tenants' databases end in ``_<8 hex>``: the
engines' ``OBSERVE`` queries never see it). Per apply, once per server and engine that the batch writes on: one read
of the batch's rows (``decide``), then, only when a generation is higher than the one
recorded, one upsert that never lowers a row (and the table created first when it was
not there). A subscription without a row is at generation 1, and generation 1 is never
written: a platform that never evacuated or moved anything has no table at all.

A subscription whose recorded generation is higher than the controller's view is
refused on that server (``transport.Fenced``, a ``PermanentError``: this controller is
stale; nothing of it is written there), the others of the batch go ahead.

Not a lock: the check and the writes that follow are not one transaction (MariaDB's DDL
commits implicitly, PostgreSQL's CREATE DATABASE runs outside one); a newer controller
raising the row between the read and a stale one's writes is not caught. The threat is
a region's old controller coming back long after the move, not a race of milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.agent import jobs
from controller.drivers import transport

#: the MariaDB database / PostgreSQL schema of tenantctl's own tables on a database server
SCHEMA = "tenantctl"
#: the fence table in it
TABLE = "fence"


@dataclass(frozen=True)
class Decision:
    """What one server's fence says about a batch."""

    #: subscriptions refused: generation recorded there, generation sent
    refused: dict[str, jobs.Fenced] = field(default_factory=dict)
    #: subscriptions whose recorded generation is raised to the one sent
    raised: dict[str, int] = field(default_factory=dict)


def decide(stored: Mapping[str, int], sent: Mapping[str, int]) -> Decision:
    """``stored``: the server's rows for the batch (missing: generation 1); ``sent``:
    subscription -> the controller's generation."""
    for sub, gen in sent.items():
        if isinstance(gen, bool) or not isinstance(gen, int) or gen < 1:
            raise ValueError(f"generation of {sub!r}: {gen!r} is not a positive integer")
    refused = {s: jobs.Fenced(stored[s], g) for s, g in sorted(sent.items()) if g < stored.get(s, 1)}
    raised = {s: g for s, g in sorted(sent.items()) if s not in refused and g > stored.get(s, 1)}
    return Decision(refused, raised)


def refusal(where: str, refused: Mapping[str, jobs.Fenced]) -> transport.Fenced:
    """The permanent failure of the refused subscriptions on ``where`` (the same message
    as the agent's: ``fenced: <sub> is at generation N on this server, ...``)."""
    return transport.Fenced(where, refused)
