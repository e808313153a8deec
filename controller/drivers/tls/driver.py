"""``TlsDriver``: one ACME certificate per SSL subscription, installed into nginx.

A server batch: decide per subscription (pure, ``decide``) whether an order is due; create
the due orders (bounded concurrency, one token of the CA's bucket each); ship every
HTTP-01 file of the batch in ONE transport call, and put the DNS-01 TXT records (one
PATCH per zone on its primary, served before the answer, removed after the order whatever
its outcome: ``dns01``) of the subscriptions that take DNS-01 (``decide.challenge``:
settings or wildcard names; HTTP-01 is the default); answer and poll (50 ms); then ONE
install run (certificates, keys, the TLS include of each site; ``nginx -t``; one reload).

A failed order never touches what serves: the last certificate stays installed, the
result is ``failed`` with the CA's reason, a ``retry_after`` hint where the failure
gives one (a rate limit, a DNS-01 server not answering yet) and ``permanent`` where
retrying cannot help (DNS-01 into a customer's zone). The driver keeps no backoff of its
own: the engine's record in the state store (``<sub>/tls``) is the only one, and
``tenantctl tls renew`` clears it. Rate limiting takes a token of the CA's bucket in the
engine's ``RateLimits`` (``use_limits``; an own ``RateLimits`` with the CA's default
limits when none is injected). Due-ness (``Settings.renew_fraction`` of the lifetime, a
forced renewal, a chain to roots the CA no longer has: ``Settings.roots``) is reported by ``drifted`` so that the engine's periodic resync brings
the subscription back; the slice holds no time.
Fencing (DR-1): the install run carries its subscriptions' generations (the engine's
view, ``use_generations``); a subscription the server refused (it has seen a newer
generation) is a permanent failure naming both generations.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

from controller import errors, ratelimit
from controller.agent import bundle, jobs, services
from controller.drivers import base, naming, slices, transport
from controller.drivers.context import Context
from controller.drivers.tls import ca, decide, dns01, metrics, render
from controller.drivers.tls import settings as settings_mod
from controller.drivers.tls import store as store_mod
from controller.effective import spec

log = logging.getLogger(__name__)

TlsChange = base.Change[slices.Tls]


class TlsDriver:
    """The tls concern (condition ``TlsReady``)."""

    concern = "tls"

    def __init__(self, ctx: Context, settings: settings_mod.Settings | None = None, *,
                 limits: base.Limiter | None = None, clock: Callable[[], dt.datetime] = ca.utcnow) -> None:
        self.ctx = ctx
        self.settings = (settings or settings_mod.Settings()).resolved(ctx.state_dir)
        self.store = store_mod.Store(ctx.state_dir)
        self.counters = ca.Counters(parent=metrics.COUNTERS)
        self.ca = ca.CA(self.settings, self.store, ctx.state_dir, self.counters)
        self.dns01 = dns01.Dns01(ctx, self.settings)
        self.limits: base.Limiter = limits or ratelimit.RateLimits()
        self.clock = clock
        self._transports = transport.Pool(ctx)
        #: test-only code the agent runs first (``transport.LAUNCH``)
        self.agent_prelude = ""

    def use_generations(self, gens: Mapping[str, int]) -> None:
        """The subscriptions' generations this pass's jobs carry (fencing, DR-1)."""
        self._transports.use_generations(gens)

    def use_limits(self, limits: base.Limiter) -> None:
        """Share the engine's ``RateLimits`` (key ``acme:<directory>``)."""
        self.limits = limits

    def sources(self) -> Sequence[Path]:
        """The TLS include template, what renders and names the files, the agent."""
        here = Path(__file__).resolve().parent
        return [*render.sources(), here / "decide.py", here / "driver.py", Path(naming.__file__).resolve(),
                *bundle.sources("tls")]

    # --- engine interface -------------------------------------------------------------

    def slice(self, item: spec.Item) -> slices.Tls:
        return slices.tls(item)

    def apply(self, server: str | None, changes: Sequence[TlsChange]) -> list[base.Result]:
        if server is None:
            return [base.Result(c.name, "failed", "not placed on a server") for c in changes]
        now = self.clock()
        roots = store_mod.read_roots(self.settings.roots)
        results: dict[str, base.Result] = {}
        due: list[tuple[TlsChange, list[str], str]] = []
        for c in changes:
            if c.action == "delete" or not decide.wanted(c.slice):
                continue
            names = decide.names(c.name, c.slice)
            why = "renewal requested" if self.store.forced(c.name) else decide.due(
                self.store.info(c.name, roots), names, now, self.settings.renew_fraction)
            if why is None:
                continue
            due.append((c, names, why))
        for name, outcome in self._issue(server, due, now).items():
            results[name] = outcome
        installed = self._install(server, changes)
        out = []
        for c in changes:
            res = results.get(c.name) or installed.get(c.name) or self._ok(c, now)
            if c.name in installed and installed[c.name].outcome == "failed":
                res = installed[c.name]
            out.append(res)
        return out

    def drifted(self, server: str | None, changes: Sequence[TlsChange]) -> dict[str, str]:
        """Subscriptions whose certificate is due (two thirds, not covering, forced),
        and whose installed files differ from the last certificate: one run per server."""
        if server is None or not changes:
            return {}
        now = self.clock()
        roots = store_mod.read_roots(self.settings.roots)
        found: dict[str, str] = {}
        expects = []
        for c in changes:
            expect: dict[str, str | None] = {}
            if decide.wanted(c.slice):
                info = self.store.info(c.name, roots)
                if info is not None:
                    metrics.observe(c.name, expiry=info.not_after.timestamp())
                why = "renewal requested" if self.store.forced(c.name) else decide.due(
                    info, decide.names(c.name, c.slice), now, self.settings.renew_fraction)
                if why is not None:  # the engine's backoff record decides when it is retried
                    found[c.name] = why
                expect = {f.dest: _digest(data) for f, data in self._files(c)}
            else:
                expect = dict.fromkeys(render.files(c.name, c.slice, False))
            expects.append(jobs.Expect(c.name, expect))
        out = self._run(server, _job("check", expect=expects), [])
        for name, what in out.drift.items():
            found[name] = f"{found[name]}; {what}" if name in found else str(what)
        return found

    # --- issuing ----------------------------------------------------------------------

    def _issue(self, server: str, due: list[tuple[TlsChange, list[str], str]], now: dt.datetime
               ) -> dict[str, base.Result]:
        if not due:
            return {}
        results: dict[str, base.Result] = {}
        pending: dict[str, ca.Pending] = {}

        def begin(item: tuple[TlsChange, list[str], str]) -> tuple[str, ca.Pending | errors.DriverError]:
            c, names, _why = item
            kind, how = decide.challenge(c.name, names, self.settings.challenge, self.settings.dns01)
            if kind == "dns-01":  # a zone DNS-01 cannot write into fails before the CA is asked
                try:
                    self.dns01.plan(c.name, c.slice, {dns01.PREFIX + n: [] for n in names})
                except errors.DriverError as exc:
                    return c.name, _reworded(exc, f"{exc} ({how})")
            if not self.limits.acquire(self.settings.rate_key, timeout=self.settings.rate_wait):
                return c.name, errors.TemporaryError(f"rate limit of {self.settings.rate_key}: no order now",
                                                     delay=self.settings.rate_wait)
            try:
                return c.name, self.ca.begin(names, ca.new_key(), kind)
            except (ca.OrderFailed, ca.Refused) as exc:
                return c.name, exc

        slices = {c.name: c.slice for c, _n, _w in due}
        zones: dict[str, list[dns01.ZoneWork]] = {}

        def publish_dns(name: str) -> tuple[str, errors.DriverError | None]:
            try:
                zones[name] = self.dns01.plan(name, slices[name], pending[name].dns)
                self.dns01.publish(zones[name])
                self.dns01.wait(zones[name])
            except errors.DriverError as exc:
                return name, _reworded(exc, f"publishing the DNS-01 challenges failed: {exc}")
            return name, None

        self.dns01.cfg = self.settings  # tests swap the settings (fresh accounts)
        try:
            with futures.ThreadPoolExecutor(max_workers=max(1, self.settings.concurrency)) as pool:
                for name, got in pool.map(begin, due):
                    if isinstance(got, errors.DriverError):
                        results[name] = self._failure(name, got, now)
                    else:
                        pending[name] = got
                if any(p.http for p in pending.values()):
                    try:
                        self._publish(server, pending)
                    except errors.DriverError as exc:
                        failed = _reworded(exc, f"publishing the challenges failed: {exc}")
                        for name in [n for n, p in pending.items() if p.http]:
                            results[name] = self._failure(name, failed, now)
                            del pending[name]
                for name, dns_failed in pool.map(publish_dns, [n for n, p in pending.items() if p.dns]):
                    if dns_failed is not None:
                        results[name] = self._failure(name, dns_failed, now)
                        del pending[name]

                def finish(name: str) -> tuple[str, bytes | errors.DriverError]:
                    try:
                        return name, self.ca.finish(pending[name])
                    except (ca.OrderFailed, ca.Refused) as exc:
                        return name, exc

                for name, chain in pool.map(finish, list(pending)):
                    if isinstance(chain, errors.DriverError):
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
            self._run(server, _job("challenges", put=put), [])

    def _success(self, sub: str, chain: bytes, key: bytes, now: dt.datetime) -> None:
        self.store.save_certificate(sub, chain, key)
        self.store.unforce(sub)
        info = store_mod.cert_info(chain)
        metrics.observe(sub, expiry=info.not_after.timestamp(), renewed=now.timestamp(), failures=0)

    def _failure(self, sub: str, problem: errors.DriverError, now: dt.datetime) -> base.Result:
        """A failed order: the CA's (or DNS-01's) reason, the error's delay as a hint, and
        permanent where retrying cannot help; the engine records the backoff."""
        metrics.failed(sub)
        info = self.store.info(sub)
        keeps = (f"; the previous certificate (valid until {info.not_after.isoformat()}) keeps serving"
                 if decide.valid(info, now) and info is not None else "")
        delay = problem.delay if isinstance(problem, errors.TemporaryError) else None
        return base.Result(sub, "failed", f"certificate order failed: {problem}{keeps}", retry_after=delay,
                           permanent=isinstance(problem, errors.PermanentError))

    def _ok(self, c: TlsChange, now: dt.datetime) -> base.Result:
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

    def _files(self, c: TlsChange) -> list[tuple[jobs.File, bytes | None]]:
        """What the server must hold for this change, in install order: the bundle
        (chain and key in one file, 0600: never a new chain with an old key), then the
        includes that name it; the files of the layout before bundles are removed.
        An expired certificate still serves rather than no TLS at all."""
        pair = self.store.certificate(c.name) if c.action != "delete" and decide.wanted(c.slice) else None
        out = [(jobs.File(render.bundle_path(c.name), None, 0o600), pair[0] + pair[1] if pair else None)]
        if c.action != "delete":
            for path, text in render.files(c.name, c.slice, pair is not None).items():
                out.append((jobs.File(path, None), text.encode() if text is not None else None))
        out += [(jobs.File(path, None), None) for path in render.legacy_paths(c.name)]
        return out

    def _install(self, server: str, changes: Sequence[TlsChange]) -> dict[str, base.Result]:
        items, staged = [], []
        for c in changes:
            files = []
            for i, (f, data) in enumerate(self._files(c)):
                src = None
                if data is not None:
                    src = f"files/{naming.system_user(c.name)}.{i}"
                    staged.append(transport.File(src, data, 0o600))
                files.append(jobs.File(f.dest, src, f.mode))
            keep = list(render.files(c.name, c.slice, True)) if c.action != "delete" else []
            prune = [jobs.Prune(render.TLS_DIR, f"{naming.system_user(c.name)}.", keep)]
            items.append(jobs.Item(c.name, c.action, files=files, prune=prune))
        job = _job("apply", items=items, validate=[["nginx", "-t"]], reload=[services.NGINX],
                   clear=[naming.system_user(c.name) for c in changes])
        try:
            out = self._run(server, job, staged)
        except errors.DriverError as exc:  # a killed agent is temporary: the next one completes its journal
            delay = exc.delay if isinstance(exc, errors.TemporaryError) else None
            return {c.name: base.Result(c.name, "failed", f"installing into nginx failed: {exc}", retry_after=delay,
                                        permanent=isinstance(exc, errors.PermanentError)) for c in changes}
        results: dict[str, base.Result] = {}
        for c in changes:
            r = out.results.get(c.name)
            fenced = transport.fenced_message(out, c.name)
            if fenced is not None:
                results[c.name] = base.Result(c.name, "failed", f"installing into nginx refused: {fenced}",
                                              permanent=True)
            elif r is None or not r.ok:
                msg = "the agent returned no result" if r is None else r.message
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

    def _run(self, server: str, job: jobs.Job, files: list[transport.File]) -> jobs.Outcome:
        return transport.Agent(self.remote(server), "tls", prelude=self.agent_prelude).run(job, files)


def _job(op: jobs.Op, **fields: Any) -> jobs.Job:
    return jobs.Job(jobs.VERSION, op, **fields)


def _reworded(exc: errors.DriverError, message: str) -> errors.DriverError:
    """``exc`` with another message, of the same kind (permanent, or temporary with its
    delay hint)."""
    if isinstance(exc, errors.PermanentError):
        return errors.PermanentError(message)
    return errors.TemporaryError(message, delay=exc.delay if isinstance(exc, errors.TemporaryError) else None)


def _digest(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()
