"""A small client of the PowerDNS Authoritative HTTP API (``/api/v1``), on http.client.

One keep-alive connection per thread and server. Every failure is translated here, at
the boundary::

    OSError, http.client.HTTPException, timeouts  -> TemporaryError  (retried)
    HTTP 5xx, 429                                 -> TemporaryError  (retried)
    HTTP 401/403                                  -> PermanentError  (wrong API key)
    HTTP 404                                      -> NotFound        (a PermanentError)
    HTTP 409/422 and other 4xx                    -> Rejected        (a PermanentError)

Temporary errors are retried with tenacity (bounded attempts and time, exponential
wait), then re-raised. Callers re-read after a ``Rejected`` where PowerDNS is known to
answer 422 although it did the work (field notes).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import tenacity

from controller import errors

T = TypeVar("T")


class NotFound(errors.PermanentError):
    """The zone (or object) does not exist."""


class Rejected(errors.PermanentError):
    """PowerDNS refused the request (4xx); ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Settings:
    """How the client talks to one PowerDNS server."""

    #: seconds to connect and for each response
    timeout: float = 10.0
    #: attempts of a request that failed temporarily (connection, 5xx)
    attempts: int = 3
    #: first wait between attempts (seconds), doubled each time, capped at 2 s
    wait: float = 0.2


class Client:
    """The API of one server (``http://address:port/api/v1/servers/localhost``)."""

    def __init__(self, name: str, address: str, port: int, api_key: str, settings: Settings | None = None) -> None:
        self.name = name
        self.address = address
        self.port = port
        self._key = api_key
        self.settings = settings or Settings()
        self._local = threading.local()
        #: requests sent, by method (tests count PATCHes)
        self.sent: dict[str, int] = {}
        #: temporary failures so far (connection errors, 5xx): the driver's sync metric
        self.failures = 0
        self._lock = threading.Lock()

    # --- transport ------------------------------------------------------------

    def _conn(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.address, self.port, timeout=self.settings.timeout)
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _once(self, method: str, path: str, body: Any) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"X-API-Key": self._key, "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        with self._lock:
            self.sent[method] = self.sent.get(method, 0) + 1
        try:
            conn = self._conn()
            conn.request(method, "/api/v1/servers/localhost" + path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            if resp.will_close:
                self._drop()
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            with self._lock:
                self.failures += 1
            raise errors.TemporaryError(f"PowerDNS on {self.name} ({self.address}:{self.port}): {exc}",
                                        delay=5.0) from exc
        return resp.status, payload

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One API call, retried on temporary errors; the decoded JSON (or None)."""
        status, payload = self._retrying(lambda: self._checked(method, path, body))
        del status
        if not payload:
            return None
        try:
            return json.loads(payload)
        except ValueError:
            return payload.decode(errors="replace")

    def _checked(self, method: str, path: str, body: Any) -> tuple[int, bytes]:
        status, payload = self._once(method, path, body)
        if status < 300:
            return status, payload
        what = f"PowerDNS on {self.name}: {method} {path}: HTTP {status}: {_message(payload)}"
        if status >= 500 or status == 429:
            with self._lock:
                self.failures += 1
            raise errors.TemporaryError(what, delay=5.0)
        if status in (401, 403):
            raise errors.PermanentError(what + " (check the server's pdns_api_key)")
        if status == 404:
            raise NotFound(what)
        raise Rejected(what, status)

    def _retrying(self, fn: Callable[[], T]) -> T:
        try:  # the common case without building a tenacity loop per call
            return fn()
        except errors.TemporaryError:
            if self.settings.attempts <= 1:
                raise
        s = self.settings
        time.sleep(s.wait)
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(errors.TemporaryError),
            stop=tenacity.stop_after_attempt(s.attempts - 1) | tenacity.stop_after_delay(3 * s.timeout),
            wait=tenacity.wait_exponential(multiplier=s.wait, max=2.0),
            reraise=True,
        )
        return retrying(fn)

    def close(self) -> None:
        self._drop()

    # --- the calls tenantctl uses -----------------------------------------------

    def zones(self) -> list[dict[str, Any]]:
        """Every zone (name, kind, masters, serial, account): one call."""
        result: list[dict[str, Any]] = self.request("GET", "/zones")
        return result

    def zone(self, name: str) -> dict[str, Any] | None:
        """The zone with its rrsets, or None if it does not exist."""
        try:
            result: dict[str, Any] = self.request("GET", f"/zones/{_q(name)}")
        except NotFound:
            return None
        except Rejected as exc:
            if exc.status == 422:  # 4.7 answers 422 "Could not find domain"
                return None
            raise
        return result

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a zone; after a 409/422 re-read it, since PowerDNS may have created it
        anyway (field notes). Raises the original error if it is really not there."""
        try:
            result: dict[str, Any] = self.request("POST", "/zones", body)
            return result
        except Rejected as exc:
            again = self.zone(body["name"])
            if again is None:
                raise
            del exc
            return again

    def update(self, name: str, body: dict[str, Any]) -> None:
        self.request("PUT", f"/zones/{_q(name)}", body)

    def patch(self, name: str, rrsets: list[dict[str, Any]]) -> None:
        self.request("PATCH", f"/zones/{_q(name)}", {"rrsets": rrsets})

    def delete(self, name: str) -> bool:
        """Delete a zone; False if it was already gone."""
        try:
            self.request("DELETE", f"/zones/{_q(name)}")
        except NotFound:
            return False
        except Rejected as exc:
            if exc.status == 422 and self.zone(name) is None:
                return False
            raise
        return True

    def metadata(self, name: str) -> dict[str, list[str]]:
        items: list[dict[str, Any]] = self.request("GET", f"/zones/{_q(name)}/metadata") or []
        return {m["kind"]: list(m["metadata"]) for m in items}

    def set_metadata(self, name: str, kind: str, values: list[str]) -> None:
        if values:
            self.request("PUT", f"/zones/{_q(name)}/metadata/{kind}", {"metadata": values})
        else:
            with contextlib.suppress(NotFound):
                self.request("DELETE", f"/zones/{_q(name)}/metadata/{kind}")

    def retrieve(self, name: str) -> None:
        """Ask a secondary to transfer the zone from its masters now."""
        self.request("PUT", f"/zones/{_q(name)}/axfr-retrieve")

    def notify(self, name: str) -> None:
        self.request("PUT", f"/zones/{_q(name)}/notify")

    def export(self, name: str) -> str:
        """The zone in zone-file format (PowerDNS answers ``{"zone": text}`` to JSON clients)."""
        text = self.request("GET", f"/zones/{_q(name)}/export")
        if isinstance(text, dict) and isinstance(text.get("zone"), str):
            return str(text["zone"])
        return text if isinstance(text, str) else json.dumps(text)


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe=".")


def _message(payload: bytes) -> str:
    try:
        return str(json.loads(payload).get("error", payload.decode(errors="replace")))
    except (ValueError, AttributeError):
        return payload.decode(errors="replace")[:200]
