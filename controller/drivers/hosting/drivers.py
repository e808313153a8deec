"""The web and php drivers: render every file of a server batch in-process, ship them
with the agent in ONE tar over ONE SSH command, let the agent install, validate and
reload once (see ``agent``), and map its per-subscription answers to results.

web: system user, home and web space (LIFE-7), one nginx file per subscription with a
server block per site (PERF-1 limits; LIFE-2 503 page when suspended; HOST-1 none).
php: one PHP-FPM file per subscription holding its pool and the pools of sites whose
settings differ (PHP-2/PHP-3); none when suspended or hosting is off.
Deletion (LIFE-6, web): the web space is archived to
``<state>/retained/<sub>/<UTC>-web.tar.gz`` first; nothing is removed if that fails.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from controller import errors
from controller.drivers import base, naming, transport
from controller.drivers.context import Context
from controller.drivers.hosting import render

AGENT = Path(__file__).with_name("agent.py")
#: test-only: ``hook(sub, path, text) -> text`` may rewrite a rendered file (e.g. corrupt
#: one to exercise the validation path); never set in production
Hook = Callable[[str, str, str], str]

#: how the agent reloads a service and knows the new configuration is loaded (``ready``,
#: see ``agent.reload``): not by waiting for old workers to finish their requests
_NGINX = {"name": "nginx", "pidfile": "/run/nginx.pid", "signal": "SIGHUP", "ready": "workers",
          "start": ["service", "nginx", "start"]}


def _fpm(version: str) -> dict[str, Any]:
    return {"name": f"php{version}-fpm", "pidfile": f"/run/php/php{version}-fpm.pid", "signal": "SIGUSR2",
            "ready": "pidfile", "start": ["service", f"php{version}-fpm", "start"]}


def _digest(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


class _Hosting:
    concern = ""

    def __init__(self, ctx: Context, *, settings: render.Settings | None = None, hook: Hook | None = None) -> None:
        self.ctx = ctx
        self.settings = settings or render.Settings()
        self.hook = hook
        self._transports = transport.Pool(ctx)
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

    def _file(self, sub: str, path: str, text: str | None) -> str | None:
        if text is not None and self.hook is not None:
            return self.hook(sub, path, text)
        return text

    def _time(self, server: str, phase: str, seconds: float) -> None:
        t = self.last_timings.setdefault(server, {})
        t[phase] = t.get(phase, 0.0) + seconds

    def _run(self, server: str, job: dict[str, Any], files: list[transport.File]) -> dict[str, Any]:
        payload = [transport.File("agent.py", AGENT.read_bytes(), 0o600),
                   transport.File("job.json", json.dumps(job).encode(), 0o600), *files]
        remote = self.remote(server)
        try:
            done = remote.ship(payload, ["python3", "-I", "-c", _LAUNCH])
        finally:
            for phase, seconds in remote.last_timings.items():
                self._time(server, phase, seconds)
        if done.returncode > 128:
            # killed (OOM killer, a reboot, an operator): the next agent rolls the batch
            # back from its journal and applies it again
            raise errors.TemporaryError(f"{server}: hosting agent killed by signal {done.returncode - 128}: "
                                        f"{done.error[-2000:]}", delay=10.0)
        if done.returncode != 0:
            raise errors.PermanentError(f"{server}: hosting agent failed ({done.returncode}): {done.error[-2000:]}")
        want = "results" if job["op"] == "apply" else "drift"
        try:
            out = json.loads(done.stdout)
            if not isinstance(out, dict) or not isinstance(out.get(want), dict):
                raise ValueError(f"no {want!r} object")
            self.last_agent_seconds[server] = float(out.get("seconds", 0.0))
            self._time(server, "agent", self.last_agent_seconds[server])
            for phase, seconds in dict(out.get("phases", {})).items():
                self._time(server, f"agent.{phase}", float(seconds))
        except (ValueError, TypeError) as exc:
            raise errors.PermanentError(f"{server}: unreadable agent answer ({exc}): {done.text[:500]}") from exc
        result: dict[str, Any] = out
        return result

    def _results(self, changes: Sequence[base.Change], out: Mapping[str, Any], ok_message: Callable[[base.Change], str]
                 ) -> list[base.Result]:
        results = []
        for c in changes:
            r = out["results"].get(c.name)
            if not isinstance(r, dict):
                results.append(base.Result(c.name, "failed", "the agent returned no result"))
            elif r.get("ok") is True:
                results.append(base.Result(c.name, "provisioned", ok_message(c)))
            else:
                results.append(base.Result(c.name, "failed", str(r.get("message", ""))[-2000:]))
        return results

    def _check(self, server: str, subs: list[dict[str, Any]]) -> dict[str, str]:
        out = self._run(server, {"op": "check", "subs": subs}, [])
        return {str(k): str(v) for k, v in out["drift"].items()}


#: runs the shipped agent from the batch directory (its last argument)
_LAUNCH = "import runpy, sys; sys.argv = ['agent', sys.argv[-1]]; runpy.run_path(sys.argv[1] + '/agent.py', run_name='__main__')"


class WebDriver(_Hosting):
    """The web concern: users, web spaces, nginx vhosts; deletion with an archive first."""

    concern = "web"

    def slice(self, item: Mapping[str, Any]) -> Mapping[str, Any]:
        sl = dict(base.SLICES["web"](item))
        sites = item["effective"]["sites"]
        sl["siteTypes"] = {s["name"]: s.get("type", "subdomain") for s in sites}
        sl["ownPools"] = render.own_pool_sites(item["effective"]["hosting"]["php"], sites)
        return sl

    def _entry(self, c: base.Change) -> tuple[dict[str, Any], list[transport.File]]:
        sub, sl = c.name, c.slice
        user = naming.system_user(sub)
        text = self._file(sub, render.vhost_path(sub), render.vhost(sub, sl))
        files: list[transport.File] = []
        staged = None
        if text is not None:
            staged = f"files/{user}.conf"
            files.append(transport.File(staged, text.encode()))
        enabled = bool(sl["hosting"]["enabled"])
        entry = {
            "name": sub, "action": c.action, "user": {"name": user, "home": naming.home(sub)},
            "webspace": list(render.SKELETON_ENTRIES) if enabled else [],
            "docroots": [naming.docroot(sub, s) for s in sl["siteTypes"]] if enabled else [],
            "files": {render.vhost_path(sub): staged}, "marks": [],
        }
        return entry, files

    def apply(self, server: str | None, changes: Sequence[base.Change]) -> list[base.Result]:
        if server is None:
            return [base.Result(c.name, "failed", "not placed on a server") for c in changes]
        results: list[base.Result] = []
        self.last_timings[server] = {}
        ensure = [c for c in changes if c.action != "delete"]
        if ensure:
            started = time.perf_counter()
            subs, files = [], [transport.File(p, d) for p, d in render.static_files()]
            for c in ensure:
                entry, fs = self._entry(c)
                subs.append(entry)
                files.extend(fs)
            self._time(server, "render", time.perf_counter() - started)
            job = {"op": "apply", "subs": subs, "validate": ["nginx", "-t"], "reload": [_NGINX],
                   "common": [{"dest": f"{render.PAGES_DIR}/suspended.html", "src": "pages/suspended.html"}]}
            out = self._run(server, job, files)

            def message(c: base.Change) -> str:
                if c.slice["state"] == "suspended":
                    return "suspended: sites answer 503"
                return "" if c.slice["hosting"]["enabled"] else "hosting disabled: no vhost (HOST-1)"
            results += self._results(ensure, out, message)
        for c in changes:
            if c.action == "delete":
                results.append(self._delete(server, c.name))
        return results

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
        files: dict[str, str | None] = {render.vhost_path(sub): None}
        for version in _versions(self.ctx, server):
            files[render.pool_path(sub, version)] = None
        job = {"op": "apply", "validate": ["nginx", "-t"],
               "reload": [_NGINX, *(_fpm(v) for v in _versions(self.ctx, server))],
               "subs": [{"name": sub, "action": "delete", "user": {"name": naming.system_user(sub), "home": home},
                         "files": files, "marks": []}]}
        try:
            out = self._run(server, job, [])
        except errors.DriverError as exc:
            return base.Result(sub, "failed", str(exc))
        kept = f"archived to {dest}" if code == 0 else "no web space to archive"
        c = base.Change(sub, "delete", {"name": sub})
        return self._results([c], out, lambda _c: f"removed; {kept}")[0]

    def drifted(self, server: str | None, changes: Sequence[base.Change]) -> dict[str, str]:
        if server is None or not changes:
            return {}
        self.last_timings[server] = {}
        subs = []
        for c in changes:
            text = self._file(c.name, render.vhost_path(c.name), render.vhost(c.name, c.slice))
            subs.append({"name": c.name, "user": {"name": naming.system_user(c.name), "home": naming.home(c.name)},
                         "expect": {render.vhost_path(c.name): _digest(text)}})
        return self._check(server, subs)


def _versions(ctx: Context, server: str) -> list[str]:
    del ctx, server
    return ["8.2"]  # the PHP versions the servers offer (Server.offers) once context carries them


class PhpDriver(_Hosting):
    """The php concern: one PHP-FPM file per subscription (its pool and site pools)."""

    concern = "php"

    def slice(self, item: Mapping[str, Any]) -> Mapping[str, Any]:
        result: Mapping[str, Any] = base.SLICES["php"](item)
        return result

    def apply(self, server: str | None, changes: Sequence[base.Change]) -> list[base.Result]:
        if server is None:
            return [base.Result(c.name, "failed", "not placed on a server") for c in changes]
        results: list[base.Result] = []
        self.last_timings[server] = {}
        by_version: dict[str, list[base.Change]] = {}
        deletes = []
        for c in changes:
            if c.action == "delete":
                deletes.append(c)
            else:
                by_version.setdefault(str(c.slice["php"]["version"]), []).append(c)
        for version, group in sorted(by_version.items()):
            started = time.perf_counter()
            subs, files = [], []
            for c in group:
                sub = c.name
                path = render.pool_path(sub, version)
                text = self._file(sub, path, render.pool(sub, c.slice, self.settings))
                staged = None
                if text is not None:
                    staged = f"files/{naming.fpm_pool(sub)}.conf"
                    files.append(transport.File(staged, text.encode()))
                subs.append({"name": sub, "action": c.action, "user": None, "files": {path: staged},
                             "sockets": render.sockets(sub, c.slice),
                             "marks": [f"[pool {naming.fpm_pool(sub)}]"]})
            job = {"op": "apply", "subs": subs, "validate": [f"php-fpm{version}", "-t"], "reload": [_fpm(version)]}
            self._time(server, "render", time.perf_counter() - started)
            out = self._run(server, job, files)

            def message(c: base.Change) -> str:
                if c.slice["state"] == "suspended":
                    return "suspended: pool stopped"
                return "" if c.slice["enabled"] else "hosting disabled: no pool (HOST-1)"
            results += self._results(group, out, message)
        if deletes:
            versions = _versions(self.ctx, server)
            job = {"op": "apply", "validate": [f"php-fpm{versions[0]}", "-t"], "reload": [_fpm(v) for v in versions],
                   "subs": [{"name": c.name, "action": "delete", "user": None, "marks": [],
                             "files": {render.pool_path(c.name, v): None for v in versions}} for c in deletes]}
            results += self._results(deletes, self._run(server, job, []), lambda _c: "pool removed")
        return results

    def drifted(self, server: str | None, changes: Sequence[base.Change]) -> dict[str, str]:
        if server is None or not changes:
            return {}
        self.last_timings[server] = {}
        subs = []
        for c in changes:
            path = render.pool_path(c.name, str(c.slice["php"]["version"]))
            text = self._file(c.name, path, render.pool(c.name, c.slice, self.settings))
            subs.append({"name": c.name, "user": None, "expect": {path: _digest(text)}})
        return self._check(server, subs)
