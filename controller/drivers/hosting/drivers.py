"""The web and php drivers: render every file of a server batch in-process, ship them
with the agent in ONE tar over ONE SSH command, let the agent install, validate and
reload once (the agent library's transaction, ``controller.agent``; the entry point is
``agent``), and map its per-subscription answers to results.

web: system user, home and web space (LIFE-7), one nginx file per subscription with a
server block per site (PERF-1 limits; LIFE-2 503 page when suspended; HOST-1 none), the
SSH keys of its chrooted SFTP logins, its sshd block when ``hosting.ssh`` grants an
interactive shell in the same chroot, its hard disk quota (RES-3: the agent's setquota
from ``resources.diskMB`` when ``hosting.hardQuota``), its FTPS accounts (issue 14; none while
suspended; more accounts than ``resources.ftpAccounts``: the subscription's web apply
fails whole, nothing sent), its logrotate file (LOG-1).
php: one PHP-FPM file per subscription holding its pool and the pools of sites whose
settings differ (PHP-2/PHP-3); none when suspended or hosting is off.
Deletion (LIFE-6, web): the web space is archived to
``<state>/retained/<sub>/<UTC>-web.tar.gz`` first; nothing is removed if that fails.
Fencing (DR-1): every transaction carries its subscriptions' generations (the engine's
view, ``use_generations``, once per pass); a subscription the server refused (it has seen
a newer generation) is a permanent failure naming both generations.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict, cast

from controller import errors
from controller.agent import bundle, jobs, services
from controller.drivers import base, naming, slices, transport
from controller.drivers.context import Context
from controller.drivers.hosting import ftp, render, webstats
from controller.effective import spec
from controller.model import php as php_model
from controller.model import values as model_values

#: test-only: ``hook(sub, path, text) -> text`` may rewrite a rendered file (e.g. corrupt
#: one to exercise the validation path); never set in production
Hook = Callable[[str, str, str], str]

NGINX_TEST = ["nginx", "-t"]


def _digest(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


def _job(op: jobs.Op, **fields: Any) -> jobs.Job:
    return jobs.Job(jobs.VERSION, op, **fields)


class Logs(TypedDict):
    retainMonths: int
    rotate: str
    compress: bool


class WebSlice(slices.Web):
    """The web concern's slice with what issue 14 adds (built here until
    ``controller.drivers.slices`` carries it): FTP accounts, their limit, the logs group."""

    ftpUsers: list[ftp.User]
    ftpAccounts: slices.Limit
    logs: Logs
    #: RES-3: the hard quota's size when ``hosting.hardQuota``
    diskMB: slices.Limit


def ftp_users(item: spec.Item) -> list[ftp.User]:
    """``effective.access.ftpUsers`` (absent from effective specs made before issue 14)."""
    access = cast(dict[str, Any], item["effective"].get("access", {}))
    return [ftp.User(name=str(u["name"]), passwordRef=None if u.get("passwordRef") is None else str(u["passwordRef"]))
            for u in access.get("ftpUsers", [])]


class Refused(Exception):
    """A subscription's web change that is not sent at all (a resource limit, a password
    that cannot be read): its message is the result's."""


WebChange = base.Change[WebSlice]
PhpChange = base.Change[slices.PhpSlice]


class _Hosting:
    concern = ""

    def __init__(self, ctx: Context, *, settings: render.Settings | None = None, hook: Hook | None = None) -> None:
        self.ctx = ctx
        self.settings = settings or render.Settings()
        self.hook = hook
        self._transports = transport.Pool(ctx)
        #: test-only code the agent runs first (``transport.LAUNCH``)
        self.agent_prelude = ""
        #: seconds the agent reported for the last batch per server (benchmarks)
        self.last_agent_seconds: dict[str, float] = {}
        #: seconds per phase of the last ``apply``/``drifted`` call per server, summed over
        #: its batches: ``render``, ``tar``, ``ssh`` (the whole remote command), ``agent``
        #: (the agent's own run) and ``agent.<phase>`` as the agent reports them
        self.last_timings: dict[str, dict[str, float]] = {}

    def remote(self, server: str) -> transport.Transport:
        return self._transports.get(server)

    def close(self) -> None:
        self._transports.close()

    def use_generations(self, gens: Mapping[str, int]) -> None:
        """The subscriptions' generations this pass's jobs carry (fencing, DR-1)."""
        self._transports.use_generations(gens)

    def _sources(self, templates: Sequence[str]) -> list[Path]:
        here = Path(__file__).resolve().parent
        return [*(render.TEMPLATES / t for t in templates), here / "drivers.py", here / "render.py",
                Path(naming.__file__).resolve(), *bundle.sources("hosting")]

    def _file(self, sub: str, path: str, text: str | None) -> str | None:
        if text is not None and self.hook is not None:
            return self.hook(sub, path, text)
        return text

    def _time(self, server: str, phase: str, seconds: float) -> None:
        t = self.last_timings.setdefault(server, {})
        t[phase] = t.get(phase, 0.0) + seconds

    def _run(self, server: str, job: jobs.Job, files: list[transport.File]) -> jobs.Outcome:
        remote = self.remote(server)
        try:
            out = transport.Agent(remote, "hosting", prelude=self.agent_prelude).run(job, files)
        finally:
            for phase, seconds in remote.last_timings.items():
                self._time(server, phase, seconds)
        self.last_agent_seconds[server] = out.seconds
        self._time(server, "agent", out.seconds)
        for phase, seconds in out.phases.items():
            self._time(server, f"agent.{phase}", seconds)
        return out

    def _results(self, changes: Sequence[base.Change[Any]], out: jobs.Outcome, ok_message: Callable[[base.Change[Any]], str]
                 ) -> list[base.Result]:
        results = []
        for c in changes:
            r = out.results.get(c.name)
            fenced = transport.fenced_message(out, c.name)
            if fenced is not None:
                results.append(base.Result(c.name, "failed", fenced, permanent=True))
            elif r is None:
                results.append(base.Result(c.name, "failed", "the agent returned no result"))
            elif r.ok:
                results.append(base.Result(c.name, "provisioned", ok_message(c)))
            else:
                results.append(base.Result(c.name, "failed", r.message[-2000:]))
        return results

    def _expect(self, c: base.Change[Any]) -> jobs.Expect:
        """What the server must hold for ``c`` (its files' digests, its user)."""
        raise NotImplementedError

    def drifted(self, server: str | None, changes: Sequence[base.Change[Any]]) -> dict[str, str]:
        """What differs on the server, every subscription of the batch in one agent run."""
        if server is None or not changes:
            return {}
        self.last_timings[server] = {}
        expect = [self._expect(c) for c in changes]
        return dict(self._run(server, _job("check", expect=expect), []).drift)


class WebDriver(_Hosting):
    """The web concern: users, web spaces, nginx vhosts; deletion with an archive first."""

    concern = "web"

    def sources(self) -> Sequence[Path]:
        """nginx vhost, logrotate and statistics files, suspended page, web-space
        skeleton; render, naming, the agent; the SSH key grammar (authorized_keys are
        re-checked when rendered); the FTP accounts' and statistics' modules."""
        return [*self._sources(["nginx/vhost.conf.j2", "logrotate/subscription.j2", "cron/webstats.j2", "pages",
                                "skel", "sshd/shell.conf.j2"]),
                Path(model_values.__file__).resolve(), Path(ftp.__file__).resolve(), Path(webstats.__file__).resolve()]

    def slice(self, item: spec.Item) -> WebSlice:
        eff = item["effective"]
        logs = eff["logs"]
        extra = {"ftpUsers": ftp_users(item), "ftpAccounts": eff["resources"]["ftpAccounts"],
                 "logs": Logs(retainMonths=int(logs["retainMonths"]), rotate=str(logs["rotate"]),
                              compress=bool(logs["compress"])),
                 "diskMB": eff["resources"]["diskMB"]}
        return cast(WebSlice, {**slices.web(item), **extra})

    def ftp_fragment(self, sub: str, sl: WebSlice) -> str | None:
        """The tenant's FTP account file, None without accounts, while suspended or with
        hosting off (LIFE-2, HOST-1); raises ``Refused`` over the limit."""
        if not sl["hosting"]["enabled"] or sl["state"] == "suspended" or not sl["ftpUsers"]:
            return None
        problem = ftp.over_limit(sl["ftpUsers"], sl["ftpAccounts"])
        if problem:
            raise Refused(problem)
        try:
            return ftp.fragment(sub, ftp.hashes(self.ctx.state_dir, sub, sl["ftpUsers"]))
        except ftp.CredentialError as exc:
            raise Refused(str(exc)) from None

    def _item(self, c: WebChange) -> tuple[jobs.Item, list[transport.File]]:
        sub, sl = c.name, c.slice
        user = naming.system_user(sub)
        text = self._file(sub, render.vhost_path(sub), render.vhost(sub, sl))
        files: list[transport.File] = []
        staged = None
        if text is not None:
            staged = f"files/{user}.conf"
            files.append(transport.File(staged, text.encode()))
        keys = self._file(sub, naming.ssh_keys(sub), render.authorized_keys(sub, sl))
        keys_staged = None
        if keys is not None:
            keys_staged = f"files/{user}.keys"
            files.append(transport.File(keys_staged, keys.encode()))
        extra = []
        for path, text, name, mode in self._extra(sub, sl):
            text = self._file(sub, path, text)
            src = None
            if text is not None:
                src = f"files/{user}.{name}"
                files.append(transport.File(src, text.encode()))
            extra.append(jobs.File(path, src, mode))
        enabled = bool(sl["hosting"]["enabled"])
        item = jobs.Item(
            sub, c.action,
            files=[jobs.File(render.vhost_path(sub), staged), jobs.File(naming.ssh_keys(sub), keys_staged, 0o644),
                   *extra],
            user=jobs.User(user, naming.home(sub)),
            webspace=list(render.SKELETON_ENTRIES) if enabled else [],
            docroots=[naming.docroot(sub, s) for s in sl["siteTypes"]] if enabled else [],
        )
        return item, files

    def apply(self, server: str | None, changes: Sequence[WebChange]) -> list[base.Result]:
        if server is None:
            return [base.Result(c.name, "failed", "not placed on a server") for c in changes]
        results: list[base.Result] = []
        self.last_timings[server] = {}
        ensure = [c for c in changes if c.action != "delete"]
        if ensure:
            started = time.perf_counter()
            items, files = [], [transport.File(p, d) for p, d in render.static_files()]
            sent = []
            for c in ensure:
                try:
                    item, fs = self._item(c)
                except Refused as exc:
                    results.append(base.Result(c.name, "failed", str(exc)))
                    continue
                items.append(item)
                files.extend(fs)
                sent.append(c)
            ensure = sent
            self._time(server, "render", time.perf_counter() - started)
        if ensure:
            job = _job("apply", items=items, validate=[NGINX_TEST], reload=[services.NGINX],
                       common=[jobs.File(f"{render.PAGES_DIR}/suspended.html", "pages/suspended.html")])
            out = self._run(server, job, files)

            def message(c: WebChange) -> str:
                if c.slice["state"] == "suspended":
                    return "suspended: sites answer 503"
                return "" if c.slice["hosting"]["enabled"] else "hosting disabled: no vhost (HOST-1)"
            results += self._results(ensure, out, message)
        for c in changes:
            if c.action == "delete":
                results.append(self._delete(server, c.name))
        return results

    def substitute(self, server: str, sub: str, sl: WebSlice, target: str) -> base.Result:
        """Issue 13 (DNS-4): on ``server``, the source of a move, ``sub``'s vhost forwards
        every request to ``target`` (its new server's address); nothing else there changes
        (user, web space, pool stay until the move removes them). ``sl``: its slice, with
        the source's address."""
        text = render.vhost(sub, sl, proxy_to=target)
        if text is None:
            return base.Result(sub, "provisioned", "no vhost to forward (HOST-1)")
        staged = f"files/{naming.system_user(sub)}.conf"
        job = _job("apply", validate=[NGINX_TEST], reload=[services.NGINX],
                   items=[jobs.Item(sub, "ensure", files=[jobs.File(render.vhost_path(sub), staged)])])
        try:
            out = self._run(server, job, [transport.File(staged, text.encode())])
        except errors.DriverError as exc:
            return base.Result(sub, "failed", str(exc), permanent=isinstance(exc, transport.Fenced))
        c = base.Change(sub, "ensure", {"name": sub})
        return self._results([c], out, lambda _c: f"forwards to {target}")[0]

    def _delete(self, server: str, sub: str) -> base.Result:
        """LIFE-6: archive the web space on the controller, then remove everything."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        dest = self.ctx.state_dir / "retained" / sub / f"{stamp}-web.tar.gz"
        home = naming.home(sub)
        script = 'cd /srv/www || exit 3; [ -d "$1" ] || exit 3; exec tar -czf - -- "$1"'
        try:
            code = self.remote(server).fetch(["sh", "-c", script, "archive", home.rsplit("/", 1)[1]], dest)
        except errors.DriverError as exc:
            return base.Result(sub, "failed", f"archive of the web space failed, nothing removed: {exc}")
        if code not in (0, 3):
            return base.Result(sub, "failed", f"archive of the web space failed (tar exited {code}), nothing removed")
        files = [jobs.File(render.vhost_path(sub), None), jobs.File(naming.ssh_keys(sub), None),
                 jobs.File(ftp.fragment_path(sub), None), jobs.File(render.logrotate_path(sub), None),
                 jobs.File(webstats.htpasswd_path(sub), None), jobs.File(webstats.cron_path(sub), None),
                 jobs.File(render.shell_path(sub), None), jobs.File(render.quota_path(sub), None)]
        files += [jobs.File(render.pool_path(sub, v), None) for v in _versions(self.ctx, server)]
        reload = [services.NGINX, *(services.php_fpm(v) for v in _versions(self.ctx, server))]
        job = _job("apply", validate=[NGINX_TEST], reload=reload,
                   items=[jobs.Item(sub, "delete", files=files, user=jobs.User(naming.system_user(sub), home))])
        try:
            out = self._run(server, job, [])
        except errors.DriverError as exc:
            return base.Result(sub, "failed", str(exc), permanent=isinstance(exc, transport.Fenced))
        kept = f"archived to {dest}" if code == 0 else "no web space to archive"
        c = base.Change(sub, "delete", {"name": sub})
        return self._results([c], out, lambda _c: f"removed; {kept}")[0]

    def _extra(self, sub: str, sl: WebSlice) -> list[tuple[str, str | None, str, int]]:
        """Issue 14's files of a subscription besides the vhost and the keys: (path, text
        or None, staged name, mode); raises ``Refused`` (FTP accounts)."""
        stats = render.stats_on(sl)
        return [(ftp.fragment_path(sub), self.ftp_fragment(sub, sl), "ftp", 0o600),
                (render.logrotate_path(sub), render.logrotate(sub, sl), "logrotate", 0o644),
                (webstats.htpasswd_path(sub), webstats.htpasswd(self.ctx.state_dir, sub) if stats else None,
                 "htpasswd", 0o644),
                (webstats.cron_path(sub), render.webstats_cron(sub, sl), "cron", 0o644),
                (render.shell_path(sub), render.shell_sshd(sub, sl), "sshd", 0o644),
                (render.quota_path(sub), render.quota(sub, sl), "quota", 0o644)]

    def _expect(self, c: WebChange) -> jobs.Expect:
        text = self._file(c.name, render.vhost_path(c.name), render.vhost(c.name, c.slice))
        keys = self._file(c.name, naming.ssh_keys(c.name), render.authorized_keys(c.name, c.slice))
        expect = {render.vhost_path(c.name): _digest(text), naming.ssh_keys(c.name): _digest(keys)}
        try:
            expect.update((path, _digest(self._file(c.name, path, t))) for path, t, _n, _m in self._extra(c.name, c.slice))
        except Refused:  # never a digest: the next apply says why
            expect[ftp.fragment_path(c.name)] = "refused"
        return jobs.Expect(c.name, expect, jobs.User(naming.system_user(c.name), naming.home(c.name)))

    def access(self, item: spec.Item) -> dict[str, str]:
        """The status' ``access`` object (issue 14): ``{"sftp": "USER@HOST:PORT"}`` for a
        placed subscription with hosting, and ``"ftp": "HOST:PORT"`` when it has FTP
        users, HOST the server's own address (where sshd and pure-ftpd listen); empty
        otherwise."""
        server = item["server"]
        if server is None or not item["effective"]["hosting"]["enabled"] or server not in self.ctx.servers:
            return {}
        host = self.ctx.servers[server].address
        out = {"sftp": naming.sftp_login(item["name"], host)}
        if ftp_users(item):
            out["ftp"] = ftp.address(host)
        return out


def _versions(ctx: Context, server: str) -> list[str]:
    """The PHP-FPM versions installed on ``server`` (its release's), where a deleted
    subscription's pools may be."""
    srv = ctx.servers.get(server)
    return list(srv.php_versions) if srv is not None else ["8.2"]


class PhpDriver(_Hosting):
    """The php concern: one PHP-FPM file per subscription (its pool and site pools)."""

    concern = "php"

    def sources(self) -> Sequence[Path]:
        """The PHP-FPM pool template; render, naming, the agent; the directive table that
        decides php_admin_value or php_value (PHP-3)."""
        return [*self._sources(["php/pool.conf.j2"]), Path(php_model.__file__).resolve()]

    def slice(self, item: spec.Item) -> slices.PhpSlice:
        return slices.php(item)

    def apply(self, server: str | None, changes: Sequence[PhpChange]) -> list[base.Result]:
        if server is None:
            return [base.Result(c.name, "failed", "not placed on a server") for c in changes]
        results: list[base.Result] = []
        self.last_timings[server] = {}
        by_version: dict[str, list[PhpChange]] = {}
        deletes = []
        for c in changes:
            if c.action == "delete":
                deletes.append(c)
            else:
                by_version.setdefault(str(c.slice["php"]["version"]), []).append(c)
        for version, group in sorted(by_version.items()):
            started = time.perf_counter()
            items, files = [], []
            for c in group:
                sub = c.name
                path = render.pool_path(sub, version)
                text = self._file(sub, path, render.pool(sub, c.slice, self.settings))
                staged = None
                if text is not None:
                    staged = f"files/{naming.fpm_pool(sub)}.conf"
                    files.append(transport.File(staged, text.encode()))
                items.append(jobs.Item(sub, c.action, files=[jobs.File(path, staged)],
                                       sockets=render.sockets(sub, c.slice), marks=[f"[pool {naming.fpm_pool(sub)}]"]))
            job = _job("apply", items=items, validate=[[f"php-fpm{version}", "-t"]],
                       reload=[services.php_fpm(version)])
            self._time(server, "render", time.perf_counter() - started)
            out = self._run(server, job, files)

            def message(c: PhpChange) -> str:
                if c.slice["state"] == "suspended":
                    return "suspended: pool stopped"
                return "" if c.slice["enabled"] else "hosting disabled: no pool (HOST-1)"
            results += self._results(group, out, message)
        if deletes:
            versions = _versions(self.ctx, server)
            job = _job("apply", validate=[[f"php-fpm{versions[0]}", "-t"]],
                       reload=[services.php_fpm(v) for v in versions],
                       items=[jobs.Item(c.name, "delete", files=[jobs.File(render.pool_path(c.name, v), None)
                                                                 for v in versions]) for c in deletes])
            results += self._results(deletes, self._run(server, job, []), lambda _c: "pool removed")
        return results

    def _expect(self, c: PhpChange) -> jobs.Expect:
        path = render.pool_path(c.name, str(c.slice["php"]["version"]))
        text = self._file(c.name, path, render.pool(c.name, c.slice, self.settings))
        return jobs.Expect(c.name, {path: _digest(text)})
