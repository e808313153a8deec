"""``TlsDriver``: one ACME certificate per SSL subscription, installed into nginx.

A server batch: decide per subscription (pure, ``decide``) whether an order is due; create
the due orders (bounded concurrency, one token of the CA's bucket each); ship every
HTTP-01 file of the batch in ONE transport call, and put the DNS-01 TXT records (one
PATCH per zone on its primary, served before the answer, removed after the order whatever
its outcome: ``dns01``) of the subscriptions that take DNS-01 (``decide.challenge``:
settings or wildcard names; HTTP-01 is the default); answer and poll (50 ms); then ONE
install run (certificates, keys, the TLS include of each site; ``nginx -t``; one reload).

A failed order never touches what serves: the last certificate stays installed, the
result is ``failed`` with the CA's reason and a ``retry_after`` from the subscription's
own backoff (``base * 2**(n-1)``, capped at hours), kept in the state dir so restarts do
not reset it. Due-ness (two thirds of the lifetime, a forced renewal) is reported by
``drifted`` so that the engine's periodic resync brings the subscription back; the slice
holds no time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any, Protocol

from controller import errors
from controller.drivers import base, naming, transport
from controller.drivers.context import Context
from controller.drivers.tls import ca, decide, dns01, metrics, render
from controller.drivers.tls import settings as settings_mod
from controller.drivers.tls import store as store_mod

log = logging.getLogger(__name__)

AGENT = Path(__file__).with_name("agent.py")
_LAUNCH = ("import runpy, sys; sys.argv = ['agent', sys.argv[-1]]; "
           "runpy.run_path(sys.argv[1] + '/agent.py', run_name='__main__')")


class Limiter(Protocol):
    """What the driver needs of ``reconcile.ratelimit.RateLimits`` (injected: drivers
    sit below reconcile)."""

    def acquire(self, dep: str, timeout: float) -> bool: ...


class _Bucket:
    """Fallback when no ``RateLimits`` is injected: Let's Encrypt-polite 5/s, burst 10."""

    def __init__(self, rate: float = 5.0, burst: float = 10.0) -> None:
        self.rate, self.burst = rate, burst
        self._tokens, self._stamp = burst, time.monotonic()
        self._lock = threading.Lock()

    def acquire(self, dep: str, timeout: float) -> bool:
        del dep
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return True
                wait = (1 - self._tokens) / self.rate
            if time.monotonic() + wait > deadline:
                return False
            time.sleep(wait)


def _ts(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


class TlsDriver:
    """The tls concern (condition ``TlsReady``)."""

    concern = "tls"

    def __init__(self, ctx: Context, settings: settings_mod.Settings | None = None, *,
                 limits: Limiter | None = None, clock: Callable[[], dt.datetime] = ca.utcnow) -> None:
        self.ctx = ctx
        self.settings = (settings or settings_mod.Settings()).resolved(ctx.state_dir)
        self.store = store_mod.Store(ctx.state_dir)
        self.counters = ca.Counters(parent=metrics.COUNTERS)
        self.ca = ca.CA(self.settings, self.store, ctx.state_dir, self.counters)
        self.dns01 = dns01.Dns01(ctx, self.settings)
        self.limits: Limiter = limits or _Bucket()
        self.clock = clock
        self._transports = transport.Pool(ctx)

    def use_limits(self, limits: Limiter) -> None:
        """Share the engine's ``RateLimits`` (key ``acme:<directory>``)."""
        self.limits = limits

    # --- engine interface -------------------------------------------------------------

    def slice(self, item: Mapping[str, Any]) -> Mapping[str, Any]:
        sl = dict(base.SLICES["tls"](item))
        sl["ip"] = item["ip"]
        sl["enabled"] = bool(item["effective"]["hosting"]["enabled"])
        sl["siteTypes"] = {s["name"]: s.get("type", "subdomain") for s in item["effective"]["sites"]}
        sl["region"] = item["region"]  # DNS-01: where the zone's primary is
        sl["dns"] = item["effective"]["dns"]  # DNS-01: a customer's zone (mode secondary) cannot take it
        return sl

    def apply(self, server: str | None, changes: Sequence[base.Change]) -> list[base.Result]:
        if server is None:
            return [base.Result(c.name, "failed", "not placed on a server") for c in changes]
        now = self.clock()
        results: dict[str, base.Result] = {}
        due: list[tuple[base.Change, list[str], str]] = []
        for c in changes:
            if c.action == "delete" or not decide.wanted(c.slice):
                continue
            names = decide.names(c.name, c.slice)
            why = "renewal requested" if self.store.forced(c.name) else decide.due(
                self.store.info(c.name), names, now, self.settings.renew_fraction)
            if why is None:
                continue
            st = self.store.status(c.name)
            nxt = _ts(st.get("next_attempt"))
            if nxt is not None and now < nxt:  # backing off: do not ask the CA again yet
                results[c.name] = self._failed(c.name, str(st.get("last_error")), (nxt - now).total_seconds(), now)
                continue
            due.append((c, names, why))
        for name, outcome in self._issue(server, due, now).items():
            results[name] = outcome
        installed = self._install(server, changes, now)
        out = []
        for c in changes:
            res = results.get(c.name) or installed.get(c.name) or self._ok(c, now)
            if c.name in installed and installed[c.name].outcome == "failed":
                res = installed[c.name]
            out.append(res)
        return out

    def drifted(self, server: str | None, changes: Sequence[base.Change]) -> dict[str, str]:
        """Subscriptions whose certificate is due (two thirds, not covering, forced),
        and whose installed files differ from the last certificate: one run per server."""
        if server is None or not changes:
            return {}
        now = self.clock()
        found: dict[str, str] = {}
        subs = []
        for c in changes:
            expect: dict[str, str | None] = {}
            if decide.wanted(c.slice):
                info = self.store.info(c.name)
                if info is not None:
                    metrics.observe(c.name, expiry=info.not_after.timestamp())
                why = "renewal requested" if self.store.forced(c.name) else decide.due(
                    info, decide.names(c.name, c.slice), now, self.settings.renew_fraction)
                nxt = _ts(self.store.status(c.name).get("next_attempt"))
                if why is not None and (nxt is None or now >= nxt):
                    found[c.name] = why
                expect = {p: _digest(f) for p, (f, _m) in self._files(c, now).items()}
            else:
                expect = dict.fromkeys(render.files(c.name, c.slice, False))
            subs.append({"name": c.name, "expect": expect})
        out = self._run(server, {"op": "check", "subs": subs}, [])
        for name, what in out["drift"].items():
            found[name] = f"{found[name]}; {what}" if name in found else str(what)
        return found

    # --- issuing ----------------------------------------------------------------------

    def _issue(self, server: str, due: list[tuple[base.Change, list[str], str]], now: dt.datetime
               ) -> dict[str, base.Result]:
        if not due:
            return {}
        results: dict[str, base.Result] = {}
        pending: dict[str, ca.Pending] = {}

        def begin(item: tuple[base.Change, list[str], str]) -> tuple[str, ca.Pending | str]:
            c, names, _why = item
            kind, how = decide.challenge(c.name, names, self.settings.challenge, self.settings.dns01)
            if kind == "dns-01":  # a zone DNS-01 cannot write into fails before the CA is asked
                try:
                    self.dns01.plan(c.name, c.slice, {dns01.PREFIX + n: [] for n in names})
                except errors.DriverError as exc:
                    return c.name, f"{exc} ({how})"
            if not self.limits.acquire(self.settings.rate_key, timeout=self.settings.rate_wait):
                return c.name, f"rate limit of {self.settings.rate_key}: no order now"
            try:
                return c.name, self.ca.begin(names, ca.new_key(), kind)
            except ca.OrderFailed as exc:
                return c.name, str(exc)

        slices = {c.name: c.slice for c, _n, _w in due}
        zones: dict[str, list[dns01.ZoneWork]] = {}

        def publish_dns(name: str) -> tuple[str, str | None]:
            try:
                zones[name] = self.dns01.plan(name, slices[name], pending[name].dns)
                self.dns01.publish(zones[name])
                self.dns01.wait(zones[name])
            except errors.DriverError as exc:
                return name, f"publishing the DNS-01 challenges failed: {exc}"
            return name, None

        self.dns01.cfg = self.settings  # tests swap the settings (fresh accounts)
        try:
            with futures.ThreadPoolExecutor(max_workers=max(1, self.settings.concurrency)) as pool:
                for name, got in pool.map(begin, due):
                    if isinstance(got, str):
                        results[name] = self._failure(name, got, now)
                    else:
                        pending[name] = got
                if any(p.http for p in pending.values()):
                    try:
                        self._publish(server, pending)
                    except errors.DriverError as exc:
                        for name in [n for n, p in pending.items() if p.http]:
                            results[name] = self._failure(name, f"publishing the challenges failed: {exc}", now)
                            del pending[name]
                for name, problem in pool.map(publish_dns, [n for n, p in pending.items() if p.dns]):
                    if problem is not None:
                        results[name] = self._failure(name, problem, now)
                        del pending[name]

                def finish(name: str) -> tuple[str, bytes | str]:
                    try:
                        return name, self.ca.finish(pending[name])
                    except ca.OrderFailed as exc:
                        return name, str(exc)

                for name, chain in pool.map(finish, list(pending)):
                    if isinstance(chain, str):
                        results[name] = self._failure(name, chain, now)
                    else:
                        self._success(name, chain, pending[name].key_pem, now)
        finally:  # the challenge TXT records never outlive the order, whatever happened
            for name, works in zones.items():
                for problem in self.dns01.cleanup(works, name):
                    log.warning("%s: %s", name, problem)
        return results

    def _publish(self, server: str, pending: Mapping[str, ca.Pending]) -> None:
        """Every HTTP-01 file of the batch in one transport call."""
        put = {naming.system_user(n): p.http for n, p in pending.items() if p.http}
        if put:
            self._run(server, {"op": "challenges", "put": put}, [])

    def _success(self, sub: str, chain: bytes, key: bytes, now: dt.datetime) -> None:
        self.store.save_certificate(sub, chain, key)
        self.store.set_status(sub, {"failures": 0, "last_error": None, "next_attempt": None,
                                    "last_renewal": now.isoformat()})
        self.store.unforce(sub)
        info = store_mod.cert_info(chain)
        metrics.observe(sub, expiry=info.not_after.timestamp(), renewed=now.timestamp(), failures=0)

    def _failure(self, sub: str, message: str, now: dt.datetime) -> base.Result:
        st = self.store.status(sub)
        failures = int(st.get("failures") or 0) + 1
        delay = decide.backoff(failures, self.settings.backoff_base, self.settings.backoff_cap)
        st.update({"failures": failures, "last_error": message, "last_attempt": now.isoformat(),
                   "next_attempt": (now + dt.timedelta(seconds=delay)).isoformat()})
        self.store.set_status(sub, st)
        metrics.observe(sub, failures=failures)
        return self._failed(sub, message, delay, now)

    def _failed(self, sub: str, message: str, delay: float, now: dt.datetime) -> base.Result:
        info = self.store.info(sub)
        keeps = (f"; the previous certificate (valid until {info.not_after.isoformat()}) keeps serving"
                 if decide.valid(info, now) and info is not None else "")
        return base.Result(sub, "failed", f"certificate order failed: {message}{keeps}", retry_after=delay)

    def _ok(self, c: base.Change, now: dt.datetime) -> base.Result:
        if c.action == "delete":
            return base.Result(c.name, "provisioned", "certificate removed from the server")
        if not c.slice["ssl"]:
            return base.Result(c.name, "provisioned", "no SSL in the plan: no certificate, no 443 (TLS-1)")
        if not c.slice["enabled"]:
            return base.Result(c.name, "provisioned", "hosting disabled: no certificate")
        info = self.store.info(c.name)
        if info is None:
            return base.Result(c.name, "failed", "no certificate")
        renew = decide.renew_at(info, self.settings.renew_fraction)
        return base.Result(c.name, "provisioned", f"certificate for {len(info.names)} names valid until "
                                                   f"{info.not_after.isoformat()} (renewal from {renew.isoformat()})")

    # --- installing -------------------------------------------------------------------

    def _files(self, c: base.Change, now: dt.datetime) -> dict[str, tuple[bytes | None, int]]:
        """What the server must hold for this change: ``{path: (bytes or None, mode)}``."""
        del now  # an expired certificate still serves rather than no TLS at all
        pair = self.store.certificate(c.name) if c.action != "delete" and decide.wanted(c.slice) else None
        files: dict[str, tuple[bytes | None, int]] = {
            render.cert_path(c.name): (pair[0] if pair else None, 0o644),
            render.key_path(c.name): (pair[1] if pair else None, 0o600),
        }
        if c.action == "delete":
            return files
        for path, text in render.files(c.name, c.slice, pair is not None).items():
            files[path] = (text.encode() if text is not None else None, 0o644)
        return files

    def _install(self, server: str, changes: Sequence[base.Change], now: dt.datetime) -> dict[str, base.Result]:
        subs, staged = [], []
        for c in changes:
            entry: dict[str, Any] = {"name": c.name, "files": {}}
            for i, (path, (data, mode)) in enumerate(sorted(self._files(c, now).items())):
                src = None
                if data is not None:
                    src = f"files/{naming.system_user(c.name)}.{i}"
                    staged.append(transport.File(src, data, 0o600))
                entry["files"][path] = {"src": src, "mode": mode}
            subs.append(entry)
        users = [naming.system_user(c.name) for c in changes]
        prune = [{"dir": render.TLS_DIR, "prefix": f"{naming.system_user(c.name)}.",
                  "keep": [p for p in render.files(c.name, c.slice, True)] if c.action != "delete" else []}
                 for c in changes]
        try:
            out = self._run(server, {"op": "install", "subs": subs, "clear": users, "prune": prune}, staged)
        except errors.DriverError as exc:
            return {c.name: base.Result(c.name, "failed", f"installing into nginx failed: {exc}") for c in changes}
        results: dict[str, base.Result] = {}
        for c in changes:
            r = out["results"].get(c.name)
            if r is None or not r["ok"]:
                msg = "the agent returned no result" if r is None else str(r["message"])
                results[c.name] = base.Result(c.name, "failed", f"installing into nginx failed: {msg}")
            elif c.action == "delete":
                self.store.forget(c.name)
                metrics.forget(c.name)
        return results

    # --- transport --------------------------------------------------------------------

    def remote(self, server: str) -> transport.Transport:
        return self._transports.get(server)

    def close(self) -> None:
        self._transports.close()
        self.dns01.close()

    def _run(self, server: str, job: dict[str, Any], files: list[transport.File]) -> dict[str, Any]:
        payload = [transport.File("agent.py", AGENT.read_bytes(), 0o600),
                   transport.File("job.json", json.dumps(job).encode(), 0o600), *files]
        done = self.remote(server).ship(payload, ["python3", "-I", "-c", _LAUNCH])
        if done.returncode != 0:
            raise errors.PermanentError(f"{server}: tls agent failed ({done.returncode}): {done.error[-2000:]}")
        try:
            out: dict[str, Any] = json.loads(done.stdout)
        except ValueError as exc:
            raise errors.PermanentError(f"{server}: unreadable tls agent answer: {done.text[:500]}") from exc
        return out


def _digest(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()
