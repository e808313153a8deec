"""The schema of the state store, as an ordered list of SQL scripts.

``MIGRATIONS[i]`` takes the database from ``PRAGMA user_version`` ``i`` to ``i + 1``.
Never edit a script that has shipped: append a new one. Each runs in its own
``BEGIN IMMEDIATE`` transaction together with the ``user_version`` bump, so a failed
migration leaves the file at the previous version, and two processes opening a fresh
file at once do not both apply it (the version is re-read under the write lock).

Conventions: names are subscription domains (``TEXT``); JSON columns hold canonical JSON
(``codec.dumps``); time columns hold ``codec.dt_to_text`` strings.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence

from controller.state import errors

V1_BASE = """
CREATE TABLE subscriptions (
    name        TEXT PRIMARY KEY,
    customer    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    server      TEXT,
    ip          TEXT,
    db_servers  TEXT NOT NULL DEFAULT '{}',
    deleted_at  TEXT,
    purge_after TEXT
);

-- SYNC-4: the customer's own values of a group (dns, hosting, php.common, ...).
CREATE TABLE sticky (
    name    TEXT NOT NULL,
    grp     TEXT NOT NULL,
    vals    TEXT NOT NULL,
    PRIMARY KEY (name, grp)
) WITHOUT ROWID;

-- PLAN-7: effective values frozen when a subscription changed customer.
CREATE TABLE transfers (
    name          TEXT PRIMARY KEY,
    from_customer TEXT NOT NULL,
    to_customer   TEXT NOT NULL,
    at            TEXT NOT NULL,
    frozen        TEXT NOT NULL
);

-- Last applied fingerprint per subscription and resource ('*' = whole subscription).
CREATE TABLE fingerprints (
    name        TEXT NOT NULL,
    resource    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    PRIMARY KEY (name, resource)
) WITHOUT ROWID;

CREATE TABLE conditions (
    name            TEXT NOT NULL,
    type            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('True', 'False', 'Unknown')),
    reason          TEXT NOT NULL,
    message         TEXT NOT NULL,
    last_transition TEXT NOT NULL,
    PRIMARY KEY (name, type)
) WITHOUT ROWID;

CREATE TABLE backoff (
    key          TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL CHECK (failures > 0),
    next_attempt TEXT NOT NULL,
    last_error   TEXT NOT NULL
);

-- The snapshot `tenantctl status` prints: one canonical JSON document per subscription.
CREATE TABLE status (
    name       TEXT PRIMARY KEY,
    doc        TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- RES-2 / OPS-4: measured usage, e.g. diskMB, trafficMB.
CREATE TABLE usage (
    name        TEXT NOT NULL,
    metric      TEXT NOT NULL,
    value       REAL NOT NULL,
    measured_at TEXT NOT NULL,
    PRIMARY KEY (name, metric)
) WITHOUT ROWID;

-- OPS-5: the audit log. Append-only, enforced below.
CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL CHECK (actor <> ''),
    action  TEXT NOT NULL CHECK (action <> ''),
    subject TEXT NOT NULL,
    message TEXT NOT NULL,
    data    TEXT
);
CREATE INDEX events_by_subject ON events (subject, id);

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only (OPS-5): UPDATE refused');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only (OPS-5): DELETE refused');
END;
"""

V2_RUNS = """
-- OPS-5: every pass (apply, run, operator) is a run with a start and an end; a run whose
-- finished_at stays NULL was interrupted (a killed apply). Rows are never deleted and
-- only an unfinished run may be finished, once.
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    actor       TEXT NOT NULL CHECK (actor <> ''),
    command     TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    summary     TEXT
);
CREATE INDEX runs_unfinished ON runs (id) WHERE finished_at IS NULL;

CREATE TRIGGER runs_no_delete BEFORE DELETE ON runs
BEGIN
    SELECT RAISE(ABORT, 'runs are append-only (OPS-5): DELETE refused');
END;

CREATE TRIGGER runs_finish_once BEFORE UPDATE ON runs
WHEN OLD.finished_at IS NOT NULL OR NEW.id IS NOT OLD.id OR NEW.actor IS NOT OLD.actor
    OR NEW.command IS NOT OLD.command OR NEW.started_at IS NOT OLD.started_at
BEGIN
    SELECT RAISE(ABORT, 'runs are append-only (OPS-5): only an unfinished run may be finished');
END;

-- Which pass recorded an event, and which concern (web, php, db, dns, tls, backup) it was about.
ALTER TABLE events ADD COLUMN run_id INTEGER REFERENCES runs (id);
ALTER TABLE events ADD COLUMN concern TEXT;
CREATE INDEX events_by_run ON events (run_id, id);
CREATE INDEX events_by_at ON events (at, id);

-- Marks the file as tenantctl's (integrity.APPLICATION_ID = 'tnct').
PRAGMA application_id = 1953391476;
"""

V3_SERVERS_AND_BACKOFF = """
-- The identity marker (generation id) last read from each server: a changed or vanished
-- marker means the server was replaced or wiped, and what was applied there is gone.
CREATE TABLE servers (
    name       TEXT PRIMARY KEY,
    generation TEXT NOT NULL,
    seen_at    TEXT NOT NULL
);

-- A permanent failure waits for its inputs to change (the fingerprint it failed with),
-- not for a time.
ALTER TABLE backoff ADD COLUMN fingerprint TEXT;
ALTER TABLE backoff ADD COLUMN permanent INTEGER NOT NULL DEFAULT 0 CHECK (permanent IN (0, 1));
"""

V4_BACKUPS = """
-- BKP-1..3: every restic snapshot tenantctl made or copied, one row per (region, id):
-- a copy in another region is its own row whose ``original`` is the local snapshot.
-- ``sums``: what the backup recorded to compare a restore drill with (JSON: per-table
-- rows and digest for a database, file count and manifest digest for files).
CREATE TABLE backup_snapshots (
    region       TEXT NOT NULL,
    id           TEXT NOT NULL,
    subscription TEXT NOT NULL,
    server       TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('db', 'files', 'settings')),
    name         TEXT NOT NULL,
    taken_at     TEXT NOT NULL,
    bytes        INTEGER NOT NULL DEFAULT 0,
    original     TEXT,
    sums         TEXT,
    verified     INTEGER NOT NULL DEFAULT 0 CHECK (verified IN (0, 1)),
    final        INTEGER NOT NULL DEFAULT 0 CHECK (final IN (0, 1)),
    PRIMARY KEY (region, id)
);
CREATE INDEX backup_snapshots_by_sub ON backup_snapshots (subscription, taken_at);

-- The latest backup attempt and restore drill of each subscription (error NULL: success);
-- ``regions``: the regions that should hold its backups as of that attempt (JSON list).
CREATE TABLE backup_subscriptions (
    subscription TEXT PRIMARY KEY,
    server       TEXT NOT NULL,
    attempted_at TEXT NOT NULL,
    succeeded_at TEXT,
    error        TEXT,
    drilled_at   TEXT,
    drill_error  TEXT,
    regions      TEXT NOT NULL DEFAULT '[]'
);

-- Per source server and region: the latest run (the server's own region) or copy.
CREATE TABLE backup_targets (
    server       TEXT NOT NULL,
    region       TEXT NOT NULL,
    attempted_at TEXT NOT NULL,
    succeeded_at TEXT,
    seconds      REAL NOT NULL DEFAULT 0,
    added        INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    PRIMARY KEY (server, region)
);

-- The latest ``restic check`` of each region's repositories, and the latest drill run.
CREATE TABLE backup_checks (
    scope   TEXT PRIMARY KEY,
    at      TEXT NOT NULL,
    ok      INTEGER NOT NULL CHECK (ok IN (0, 1)),
    seconds REAL NOT NULL DEFAULT 0,
    detail  TEXT
);
"""

V5_REGIONS = """
-- Region evacuations in force (issue 10, DR-1): the subscriptions of ``region`` are
-- placed in ``target`` until the evacuation is ended.
CREATE TABLE region_evacuations (
    region     TEXT PRIMARY KEY,
    target     TEXT NOT NULL,
    started_at TEXT NOT NULL
);

-- Fencing: a subscription's generation grows each time it moves to other servers; a
-- write for it carries its generation, and a server that recorded a newer one refuses.
CREATE TABLE subscription_generations (
    subscription TEXT PRIMARY KEY,
    generation   INTEGER NOT NULL CHECK (generation >= 1)
);
"""

V6_USAGE = """
-- Usage history (issue 12 item 5, OPS-4; controller.state.usage). The latest disk and
-- database sizes stay in v1's ``usage`` table (diskMB, databaseMB, and trafficMB: the
-- current month's traffic), which RES-2 reads; these tables keep what reports are made of.
-- OPS-4: requests and bytes (nginx $body_bytes_sent) per subscription and UTC day, summed
-- from its access logs; kept after the logs are rotated away (LOG-1).
CREATE TABLE usage_traffic (
    subscription TEXT NOT NULL,
    day          TEXT NOT NULL,
    requests     INTEGER NOT NULL DEFAULT 0 CHECK (requests >= 0),
    bytes        INTEGER NOT NULL DEFAULT 0 CHECK (bytes >= 0),
    PRIMARY KEY (subscription, day)
) WITHOUT ROWID;
CREATE INDEX usage_traffic_by_day ON usage_traffic (day);

-- OPS-4: the largest size measured each UTC day (metric diskMB or databaseMB).
CREATE TABLE usage_daily (
    subscription TEXT NOT NULL,
    day          TEXT NOT NULL,
    metric       TEXT NOT NULL,
    value        REAL NOT NULL,
    PRIMARY KEY (subscription, day, metric)
) WITHOUT ROWID;

-- Where reading each subscription's access logs on a server stopped (JSON: inode, head,
-- offset, last); written in the same transaction as the counts it led to.
CREATE TABLE usage_cursors (
    subscription TEXT NOT NULL,
    server       TEXT NOT NULL,
    cursor       TEXT NOT NULL,
    read_at      TEXT NOT NULL,
    PRIMARY KEY (subscription, server)
) WITHOUT ROWID;

-- Per server: when its web spaces were last measured with du (at most hourly).
CREATE TABLE usage_servers (
    server  TEXT PRIMARY KEY,
    disk_at TEXT NOT NULL
);
"""

V7_DRILLS = """
-- Each subscription's latest disaster-recovery drill on a spare server (issue 10 item 5,
-- DR-1; controller.state.drills); the newest of all is the maximum started_at.
CREATE TABLE dr_drills (
    subscription TEXT PRIMARY KEY,
    started_at   TEXT NOT NULL,
    ok           INTEGER NOT NULL,
    error        TEXT,
    -- seconds from the start of the restore to the spare's HTTP answer with the right content
    rto_seconds  REAL,
    -- seconds between the restored point (snapshot, or newest archived log) and started_at
    rpo_seconds  REAL,
    -- the region of the repository read, the spare server and its region
    source_region TEXT NOT NULL,
    spare        TEXT NOT NULL,
    spare_region TEXT NOT NULL,
    restored_at  TEXT,
    -- what rpo_seconds measured: 'snapshot' (nightly) or 'archive' (newest archived log, PITR plans)
    rpo_basis    TEXT NOT NULL DEFAULT 'snapshot'
);
"""

V8_MOVES = """
-- Moves of subscriptions between servers (issue 13 item 2; controller.state.moves): one
-- row per subscription while it moves and during the substitute period after (DNS-4);
-- the planner places a moving subscription on target_server from step 'placing' on.
CREATE TABLE subscription_moves (
    subscription   TEXT PRIMARY KEY,
    source_server  TEXT NOT NULL,
    target_server  TEXT NOT NULL,
    -- the last step done (controller.reconcile.move.STEPS); a re-run resumes after it
    step           TEXT NOT NULL,
    started_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    -- who asked (the event log names them too)
    actor          TEXT NOT NULL,
    -- the end of the substitute period (DNS-4): the source is removed after it
    substitute_until TEXT,
    -- JSON: what each step measured or chose (snapshot ids, checksums, downtime)
    data           TEXT NOT NULL DEFAULT '{}'
);

-- A passed drill's remarks (a substituted PHP version, ...), apart from a failure's error.
ALTER TABLE dr_drills ADD COLUMN notes TEXT;

-- Emergency maintenance windows (OPS-2), announced at least 24 h ahead
-- (controller.state.notices): disruptive changes of the region may run inside them too.
CREATE TABLE maintenance_notices (
    region       TEXT NOT NULL,
    start_at     TEXT NOT NULL,
    end_at       TEXT NOT NULL,
    announced_at TEXT NOT NULL,
    actor        TEXT NOT NULL,
    reason       TEXT NOT NULL,
    PRIMARY KEY (region, start_at)
) WITHOUT ROWID;
"""

V9_DEMOS = """
-- Demo platforms' resets (PLAT-3; controller.state.demos): the last reset of each demo
-- (when it started, how long it took, its outcome, the reference and snapshots used) and
-- the last successful one; every reset is also an event.
CREATE TABLE demo_resets (
    subscription TEXT PRIMARY KEY,
    at           TEXT NOT NULL,
    seconds      REAL NOT NULL,
    ok           INTEGER NOT NULL,
    source       TEXT NOT NULL,
    snapshots    TEXT NOT NULL,
    error        TEXT,
    actor        TEXT NOT NULL,
    last_ok_at   TEXT
) WITHOUT ROWID;
"""

MIGRATIONS: tuple[str, ...] = (V1_BASE, V2_RUNS, V3_SERVERS_AND_BACKOFF, V4_BACKUPS, V5_REGIONS, V6_USAGE,
                               V7_DRILLS, V8_MOVES, V9_DEMOS)
"""Every migration, oldest first. ``len(MIGRATIONS)`` is the current schema version."""


def latest(migrations: Sequence[str] | None = None) -> int:
    """The schema version a store is at once fully migrated."""
    return len(MIGRATIONS if migrations is None else migrations)


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the file (0 for a new file)."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def statements(script: str) -> Iterator[str]:
    """Split a script into complete statements (trigger bodies stay whole).

    ``executescript`` would do it, but it commits any open transaction first, which
    would defeat running a migration and its version bump atomically.
    """
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""
    leftover = [ln for ln in buffer.splitlines() if ln.strip() and not ln.strip().startswith("--")]
    if leftover:
        raise ValueError(f"incomplete SQL statement at the end of a migration: {leftover[0]!r}")


def check_version(conn: sqlite3.Connection, path: str, migrations: Sequence[str] | None = None) -> int:
    """Return the file's version; raise ``SchemaTooNew`` if this code cannot read it."""
    found = user_version(conn)
    if found > latest(migrations):
        raise errors.SchemaTooNew(path, found, latest(migrations))
    return found


def migrate(conn: sqlite3.Connection, path: str, migrations: Sequence[str] | None = None) -> int:
    """Apply the missing migrations, one transaction each; return the final version.

    ``conn`` must be in autocommit mode (``isolation_level=None``) and not inside a
    transaction.
    """
    if migrations is None:
        migrations = MIGRATIONS  # read at call time, so tests can append a migration
    check_version(conn, path, migrations)
    for version, script in enumerate(migrations, start=1):
        if user_version(conn) >= version:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = check_version(conn, path, migrations)  # re-read under the write lock
            if current < version:
                for statement in statements(script):
                    conn.execute(statement)
                # A PRAGMA takes no parameters; `version` is our own int, not user text.
                conn.execute(f"PRAGMA user_version = {int(version)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return user_version(conn)
