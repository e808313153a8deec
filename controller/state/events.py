"""The audit log (OPS-5): every action taken by operators and by the system.

Append-only, and not only by convention: triggers in the schema (``migrations``) abort
any UPDATE or DELETE of the ``events`` table. An event recorded inside a
``store.transaction()`` is committed, or rolled back, with the change it describes.
"""

from __future__ import annotations

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
) -> int:
    """Append one event; return its id.

    ``actor`` says who acted (``"operator"``, ``"controller"``, ``"billing"``, ...),
    ``action`` what was done (``"apply"``, ``"suspend"``, ...), ``subject`` to what
    (usually a subscription name).
    """
    if not actor or not action:
        raise ValueError("an event needs an actor and an action")
    cursor = st._execute(
        "INSERT INTO events (at, actor, action, subject, message, data) VALUES (?, ?, ?, ?, ?, ?)",
        (
            codec.dt_to_text(st.now()),
            actor,
            action,
            subject,
            message,
            None if data is None else codec.dumps(data),
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
    limit: int = 100,
) -> list[records.Event]:
    """Events in the order they were recorded (oldest first).

    ``since_id`` is exclusive, so a tail is ``list_events(st, since_id=last.id)``;
    ``subject`` keeps one subject's events; at most ``limit`` are returned.
    """
    if limit < 0:
        raise ValueError("limit must be >= 0")
    clauses: list[str] = []
    params: list[Any] = []
    if subject is not None:
        clauses.append("subject = ?")
        params.append(subject)
    if since_id is not None:
        clauses.append("id > ?")
        params.append(since_id)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = st._fetchall(
        f"SELECT id, at, actor, action, subject, message, data FROM events{where} ORDER BY id LIMIT ?",
        (*params, limit),
    )
    return [
        records.Event(
            id=row[0],
            at=codec.text_to_dt(row[1]),
            actor=row[2],
            action=row[3],
            subject=row[4],
            message=row[5],
            data=None if row[6] is None else codec.loads(row[6]),
        )
        for row in rows
    ]
