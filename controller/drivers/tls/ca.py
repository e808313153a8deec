"""The ACME client of the tls driver (the ``acme`` library), translated at the boundary.

* One account per (directory, account name), key kept 0600 under the state dir; it is
  (re-)registered once per ``CA`` object: ``newAccount`` with a known key answers with the
  existing account, and a CA that forgot it (Pebble restarts) gets it again.
* An order is split in two so that a server batch ships every challenge file in ONE
  transport call: ``begin`` (new order, challenges to publish) and ``finish`` (answer,
  poll every ``poll_interval`` -- 50 ms, not the library's 1 s sleeps -- finalize,
  download the chain).
* Every HTTP request to the CA is counted and timed by result (``ok``, ``error``: the
  CA answered an error, ``unreachable``) in ``Counters``.

Errors: the CA's problem documents and the library's errors become ``OrderFailed``
carrying the CA's own words (``TemporaryError``: the engine backs off and retries; an
hour at least after ``rateLimited``), or ``Refused`` (``PermanentError``) when the CA's
policy refuses the names (``rejectedIdentifier``, ``unsupportedIdentifier``).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from acme import challenges, crypto_util, messages
from acme import client as acme_client
from acme import errors as acme_errors
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy import jwa, jwk

from controller import errors
from controller.drivers.tls import settings as settings_mod
from controller.drivers.tls import store as store_mod


class OrderFailed(errors.TemporaryError):
    """An order did not give a certificate; ``str()`` is the CA's reason."""


class Refused(errors.PermanentError):
    """The CA will not issue for these names as they are (its policy refuses them):
    retrying cannot help until the names change."""


#: ACME problem types (RFC 8555 6.7) that asking again cannot change
REFUSALS = frozenset({"rejectedIdentifier", "unsupportedIdentifier"})
#: seconds to wait after the CA's ``rateLimited`` (its limits count per hour and week)
RATE_LIMITED_DELAY = 3600.0


class Counters:
    """ACME requests and orders by result, with their durations (thread-safe)."""

    def __init__(self, parent: Counters | None = None) -> None:
        self._lock = threading.Lock()
        self.parent = parent
        self.requests: dict[str, int] = {}
        self.request_seconds: dict[str, float] = {}
        self.orders: dict[str, int] = {}
        self.order_seconds: dict[str, float] = {}

    def request(self, result: str, seconds: float) -> None:
        with self._lock:
            self.requests[result] = self.requests.get(result, 0) + 1
            self.request_seconds[result] = self.request_seconds.get(result, 0.0) + seconds
        if self.parent is not None:
            self.parent.request(result, seconds)

    def order(self, result: str, seconds: float) -> None:
        with self._lock:
            self.orders[result] = self.orders.get(result, 0) + 1
            self.order_seconds[result] = self.order_seconds.get(result, 0.0) + seconds
        if self.parent is not None:
            self.parent.order(result, seconds)

    @property
    def total_requests(self) -> int:
        with self._lock:
            return sum(self.requests.values())


class _Network(acme_client.ClientNetwork):
    """The library's network layer, counting and timing every request."""

    def __init__(self, counters: Counters, verify: str | bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.verify_ssl = verify  # type: ignore[assignment]  # requests takes a CA file too
        self._counters = counters

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        started = time.perf_counter()
        try:
            response = super()._send_request(method, url, *args, **kwargs)
        except requests.RequestException:
            self._counters.request("unreachable", time.perf_counter() - started)
            raise
        self._counters.request("ok" if response.status_code < 400 else "error", time.perf_counter() - started)
        return response


@dataclass
class Pending:
    """An order whose challenges are to be published, then answered."""

    names: list[str]
    key_pem: bytes
    client: acme_client.ClientV2
    order: messages.OrderResource
    started: float
    #: HTTP-01: ``{token: key authorization}`` to serve under /.well-known/acme-challenge/
    http: dict[str, str] = field(default_factory=dict)
    #: DNS-01: ``{_acme-challenge.name: [TXT values]}``
    dns: dict[str, list[str]] = field(default_factory=dict)
    answers: list[tuple[messages.ChallengeBody, challenges.ChallengeResponse]] = field(default_factory=list)


def new_key() -> bytes:
    """A certificate key (ECDSA P-256), PEM PKCS#8."""
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def reason(exc: BaseException) -> str:
    """The CA's (or the network's) own words for a failure."""
    if isinstance(exc, messages.Error):
        return f"{exc.detail or exc.description or exc.typ} ({exc.code or exc.typ})"
    if isinstance(exc, acme_errors.ValidationError):
        return "; ".join(_authz_errors(a) for a in exc.failed_authzrs)
    if isinstance(exc, requests.RequestException):
        return f"CA unreachable: {exc}"
    return str(exc) or type(exc).__name__


def _authz_errors(authzr: messages.AuthorizationResource) -> str:
    name = authzr.body.identifier.value
    errs = [reason(c.error) for c in authzr.body.challenges if c.error is not None]
    return f"{name}: {', '.join(errs) or authzr.body.status.name}"


class CA:
    """One ACME directory and account."""

    def __init__(self, cfg: settings_mod.Settings, store: store_mod.Store, state_dir: Path, counters: Counters,
                 *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.cfg = cfg
        self.store = store
        self.state_dir = state_dir
        self.counters = counters
        self.sleep = sleep
        self._lock = threading.Lock()
        self._directory: messages.Directory | None = None
        self._key: jwk.JWKRSA | None = None
        self._regr: messages.RegistrationResource | None = None

    # --- account --------------------------------------------------------------------

    def _network(self, account: messages.RegistrationResource | None) -> _Network:
        return _Network(self.counters, self.cfg.verify(self.state_dir), key=self._account_key(), account=account,
                        alg=jwa.RS256, user_agent="tenantctl", timeout=30)

    def _account_key(self) -> jwk.JWKRSA:
        if self._key is None:
            path = self.store.account_dir(self.cfg.directory, self.cfg.account) / "key.json"
            if path.exists():
                self._key = jwk.JWKRSA.json_loads(path.read_text())
            else:
                self._key = jwk.JWKRSA(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
                store_mod.write_private(path, self._key.json_dumps().encode())
        return self._key

    def _account(self, *, again: bool = False) -> tuple[messages.Directory, messages.RegistrationResource]:
        if not self.cfg.directory:  # temporary: an `env up` later starts the embedded one
            raise errors.TemporaryError("no ACME CA: set TENANTCTL_ACME_DIRECTORY, or start the embedded one "
                                        "(tenantctl env up)", delay=60.0)
        with self._lock:
            if again:
                self._regr = None
            if self._directory is None:
                self._directory = acme_client.ClientV2.get_directory(self.cfg.directory, self._network(None))
            if self._regr is None:
                net = self._network(None)
                client = acme_client.ClientV2(self._directory, net)
                reg = messages.NewRegistration.from_data(email=self.cfg.email, terms_of_service_agreed=True)
                try:
                    self._regr = client.new_account(reg)
                except acme_errors.ConflictError as exc:  # the key's account exists: use it
                    self._regr = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
                path = self.store.account_dir(self.cfg.directory, self.cfg.account) / "regr.json"
                store_mod.write_private(path, self._regr.json_dumps().encode())
            return self._directory, self._regr

    def _client(self) -> acme_client.ClientV2:
        directory, regr = self._account()
        return acme_client.ClientV2(directory, self._network(regr))

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except (OrderFailed, Refused):
            raise
        except messages.Error as exc:
            if exc.code in REFUSALS:
                raise Refused(reason(exc)) from exc
            raise OrderFailed(reason(exc), delay=RATE_LIMITED_DELAY if exc.code == "rateLimited" else None) from exc
        except (acme_errors.Error, requests.RequestException, ValueError) as exc:
            raise OrderFailed(reason(exc)) from exc

    # --- orders ---------------------------------------------------------------------

    def begin(self, names: list[str], key_pem: bytes, challenge: settings_mod.Challenge | None = None) -> Pending:
        """Create the order and compute what to publish for its pending challenges
        (``challenge``: HTTP-01 or DNS-01; None: the settings' default)."""
        kind = challenge or self.cfg.challenge
        started = time.perf_counter()
        try:
            with self._translated():
                try:
                    client = self._client()
                    order = client.new_order(crypto_util.make_csr(key_pem, names))
                except messages.Error as exc:
                    if exc.code != "accountDoesNotExist":
                        raise
                    self._account(again=True)
                    client = self._client()
                    order = client.new_order(crypto_util.make_csr(key_pem, names))
                pending = Pending(names, key_pem, client, order, started)
                want = challenges.DNS01 if kind == "dns-01" else challenges.HTTP01
                for authzr in order.authorizations:
                    if authzr.body.status == messages.STATUS_VALID:
                        continue  # reused authorization
                    chall = next((c for c in authzr.body.challenges if isinstance(c.chall, want)), None)
                    if chall is None:
                        raise OrderFailed(f"{authzr.body.identifier.value}: the CA offers no {kind}")
                    response, validation = chall.response_and_validation(client.net.key)
                    if isinstance(chall.chall, challenges.HTTP01):
                        pending.http[chall.chall.encode("token")] = str(validation)
                    else:
                        name = chall.chall.validation_domain_name(authzr.body.identifier.value)
                        pending.dns.setdefault(name, []).append(str(validation))
                    pending.answers.append((chall, response))
                return pending
        except (OrderFailed, Refused):
            self.counters.order("failed", time.perf_counter() - started)
            raise

    def finish(self, p: Pending) -> bytes:
        """Answer the challenges, poll until the CA decided, finalize: the full chain."""
        try:
            with self._translated():
                chain = self._finish(p)
        except (OrderFailed, Refused):
            self.counters.order("failed", time.perf_counter() - p.started)
            raise
        self.counters.order("issued", time.perf_counter() - p.started)
        return chain

    def _finish(self, p: Pending) -> bytes:
        client = p.client
        deadline = time.monotonic() + self.cfg.order_timeout
        for chall, response in p.answers:
            client.answer_challenge(chall, response)
        failed = []
        for url in p.order.body.authorizations:
            while True:
                authzr = client._authzr_from_response(client._post_as_get(url), uri=url)
                if authzr.body.status != messages.STATUS_PENDING:
                    break
                self._wait(deadline, "authorization")
            if authzr.body.status != messages.STATUS_VALID:
                failed.append(_authz_errors(authzr))
        if failed:
            raise OrderFailed("; ".join(failed))
        try:
            client.begin_finalization(p.order)
        except messages.Error as exc:
            if exc.code != "orderNotReady":
                raise
        while True:
            body = messages.Order.from_json(client._post_as_get(p.order.uri).json())
            if body.status == messages.STATUS_INVALID:
                raise OrderFailed(reason(body.error) if body.error is not None else "order invalid")
            if body.status == messages.STATUS_VALID and body.certificate is not None:
                return client._post_as_get(body.certificate).text.encode()
            if body.status == messages.STATUS_READY:
                client.begin_finalization(p.order)
            self._wait(deadline, "order")

    def _wait(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise OrderFailed(f"the CA did not decide on the {what} within {self.cfg.order_timeout:.0f}s")
        self.sleep(self.cfg.poll_interval)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
