"""The audit log (OPS-5): every action taken by operators and by the system.

Append-only, and not only by convention: triggers in the schema (``migrations``) abort
any UPDATE or DELETE of the ``events`` table. An event recorded inside a
``store.transaction()`` is committed, or rolled back, with the change it describes.
Each event may name the concern it was about and the run (``Store.begin_run``) that
recorded it, so that one pass, and an interrupted one, can be read back whole.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from controller.state import codec, records, store


def record(
    st: store.Store,
    *,
    actor: str,
    action: str,
    subject: str,
    message: str,
    data: dict[str, Any] | None = None,
    concern: str | None = None,
    run_id: int | None = None,
) -> int:
    """Append one event; return its id.

    ``actor`` says who acted (``"operator"``, ``"controller"``, ``"billing"``, ...),
    ``action`` what was done (``"create"``, ``"suspend"``, ...), ``subject`` to what
    (usually a subscription name), ``concern`` which concern of it (``"web"``, ...),
    ``run_id`` in which run.
    """
    if not actor or not action:
        raise ValueError("an event needs an actor and an action")
    cursor = st._execute(
        "INSERT INTO events (at, actor, action, subject, message, data, concern, run_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            codec.dt_to_text(st.now()),
            actor,
            action,
            subject,
            message,
            None if data is None else codec.dumps(data),
            concern,
            run_id,
        ),
    )
    event_id = cursor.lastrowid
    assert event_id is not None
    return event_id


def list_events(
    st: store.Store,
    *,
    subject: str | None = None,
    since_id: int | None = None,
    since: datetime | None = None,
    action: str | None = None,
    concern: str | None = None,
    run_id: int | None = None,
    limit: int | None = 100,
    last: bool = False,
) -> list[records.Event]:
    """Events in the order they were recorded (oldest first), every filter combined.

    ``since_id`` is exclusive, so a tail is ``list_events(st, since_id=last.id)``;
    ``since`` keeps events recorded at or after that time; ``subject``, ``action``,
    ``concern`` and ``run_id`` keep exact matches. At most ``limit`` (None: all) are
    returned: the oldest ones, or with ``last=True`` the most recent ones.
    """
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (("subject", subject), ("action", action), ("concern", concern), ("run_id", run_id)):
        if value is not None:
            clauses.append(f"{column} = ?")  # column names are our own constants
            params.append(value)
    if since_id is not None:
        clauses.append("id > ?")
        params.append(since_id)
    if since is not None:
        clauses.append("at >= ?")
        params.append(codec.dt_to_text(since))
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    order = "DESC" if last else "ASC"
    sql = f"SELECT id, at, actor, action, subject, message, data, concern, run_id FROM events{where} ORDER BY id {order}"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    rows = st._fetchall(sql, params)
    if last:
        rows.reverse()
    return [
        records.Event(
            id=row[0],
            at=codec.text_to_dt(row[1]),
            actor=row[2],
            action=row[3],
            subject=row[4],
            message=row[5],
            data=None if row[6] is None else codec.loads(row[6]),
            concern=row[7],
            run_id=row[8],
        )
        for row in rows
    ]
