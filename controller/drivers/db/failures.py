"""Backend errors of PyMySQL and psycopg translated into tenantctl's tree, and the
retry policy of connections.

    pymysql / psycopg error
    ├── cannot reach / lost the server, too many connections, deadlock,
    │   serialization failure, server shutting down      -> TemporaryError (retried first)
    └── access denied, syntax, privilege, unknown object,
        anything else                                     -> PermanentError
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import psycopg
import pymysql  # type: ignore[import-untyped,unused-ignore]
import tenacity

from controller import errors

T = TypeVar("T")

#: MySQL/MariaDB client and server codes that a later attempt may not see again.
MYSQL_TEMPORARY = {
    1040,  # too many connections
    1053,  # server shutdown in progress
    1205,  # lock wait timeout
    1213,  # deadlock
    2002, 2003, 2005, 2006, 2013, 2055,  # cannot connect / gone away / lost connection
}
#: PostgreSQL SQLSTATE classes (and codes) that are worth retrying.
PG_TEMPORARY_CLASSES = ("08", "53", "57", "40")
RETRY_DELAY = 5.0


def mysql_error(exc: pymysql.err.MySQLError, where: str) -> errors.DriverError:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    msg = exc.args[1] if len(exc.args) > 1 else str(exc)
    text = f"mariadb on {where}: {msg}" + (f" ({code})" if code is not None else "")
    if isinstance(exc, pymysql.err.InterfaceError) or code in MYSQL_TEMPORARY:
        return errors.TemporaryError(text, delay=RETRY_DELAY)
    return errors.PermanentError(text)


def pg_error(exc: psycopg.Error, where: str) -> errors.DriverError:
    state = exc.sqlstate
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = f"postgresql on {where}: {first}" + (f" ({state})" if state else "")
    if state is None and isinstance(exc, psycopg.OperationalError):
        return errors.TemporaryError(text, delay=RETRY_DELAY)  # could not connect
    if state is not None and state.startswith(PG_TEMPORARY_CLASSES) and not state.startswith("28"):
        return errors.TemporaryError(text, delay=RETRY_DELAY)
    return errors.PermanentError(text)


def translate(exc: BaseException, where: str) -> errors.DriverError:
    if isinstance(exc, errors.DriverError):
        return exc
    if isinstance(exc, pymysql.err.MySQLError):
        return mysql_error(exc, where)
    if isinstance(exc, psycopg.Error):
        return pg_error(exc, where)
    if isinstance(exc, OSError):
        return errors.TemporaryError(f"{where}: {exc}", delay=RETRY_DELAY)
    return errors.PermanentError(f"{where}: {type(exc).__name__}: {exc}")


def _temporary(exc: BaseException) -> bool:
    return isinstance(translate(exc, ""), errors.TemporaryError)


def with_retries(fn: Callable[[], T], where: str, *, attempts: int = 3, wait: float = 0.2) -> T:
    """Call ``fn``; retry temporary failures (``attempts`` in all, exponential wait from
    ``wait`` seconds), then raise the translated error ``from`` the backend's."""
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential(multiplier=wait, max=2.0),
        retry=tenacity.retry_if_exception(_temporary),
        reraise=True,
    )
    try:
        return retrying(fn)
    except Exception as exc:
        raise translate(exc, where) from exc
