"""One transaction over a server batch: stage, validate once, swap, reload once,
verify the reload took, else roll back.

1. An unfinished transaction of an earlier (killed) agent is rolled back from the
   journal; the services it names are validated and reloaded even if this batch changes
   nothing.
2. Each item's managed files that differ from the server (digests: an unchanged file
   keeps its mtime) are noted with their previous content in the journal, then
   installed (writes in list order, removals in reverse order).
3. The validators run once. On failure the previous files come back, and the items
   whose files break validation are found (the validator's message names a file or a
   mark of the item; otherwise bisection), marked failed with the message; the others
   are installed.
4. One reload per service, verified (``services``); a reload that fails or times out
   puts the previous files back and brings the services up on them.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from controller.agent import files, jobs, journal, phases, services

#: one item's new (or previous) content: dest -> (bytes or None, mode)
Content = dict[str, tuple[bytes | None, int]]
Prepare = Callable[[jobs.Item], jobs.ItemResult | None]


def _pruned(item: jobs.Item) -> list[jobs.File]:
    """The item's files plus removals of what its prune specs no longer keep."""
    out = list(item.files)
    named = {f.dest for f in out}
    for p in item.prune:
        try:
            entries = sorted(os.listdir(p.dir))
        except FileNotFoundError:
            continue
        for entry in entries:
            dest = os.path.join(p.dir, entry)
            if entry.startswith(p.prefix) and dest not in p.keep and dest not in named:
                out.append(jobs.File(dest, None))  # removals run in reverse: these first
    return out


def owner_of(message: str, items: dict[str, jobs.Item], among: set[str]) -> str | None:
    for name in sorted(among):
        if any(mark in message for mark in [*(f.dest for f in items[name].files), *items[name].marks]):
            return name
    return None


class Transaction:
    """Applies one job's items (see the module docstring)."""

    def __init__(self, job: jobs.Job, stage: str, prepare: Prepare | None = None) -> None:
        self.job = job
        self.stage = stage
        self.prepare = prepare
        self.items = {i.name: i for i in job.items}
        self.results: dict[str, jobs.ItemResult] = {}
        self.new: dict[str, Content] = {}
        self.old: dict[str, Content] = {}
        self.staged: dict[str, str] = {}

    # --- installing and validating ------------------------------------------------------

    def install(self, names: set[str], which: dict[str, Content]) -> None:
        with phases.timed("install"):
            for n in sorted(names):
                content = which.get(n, {})
                for dest, (data, mode) in content.items():
                    if data is not None:
                        staged = self.staged.get(dest) if which is self.new else None
                        files.write(dest, data, mode, staged=staged)
                for dest, (data, _mode) in reversed(content.items()):
                    if data is None:
                        files.write(dest, None)

    def valid(self, validators: list[list[str]] | None = None) -> tuple[bool, str]:
        with phases.timed("validate"):
            for argv in self.job.validate if validators is None else validators:
                phases.count("validations")
                code, out = files.run(argv, timeout=120)
                if code != 0:
                    return False, out
        return True, ""

    def bisect(self, names: list[str]) -> str | None:
        """One item whose new files alone break validation, or None."""
        while len(names) > 1:
            half = names[: len(names) // 2]
            self.install(set(half), self.new)
            ok, _ = self.valid()
            self.install(set(half), self.old)
            names = names[len(names) // 2:] if ok else half
        if not names:
            return None
        self.install(set(names), self.new)
        ok, _ = self.valid()
        self.install(set(names), self.old)
        return None if ok else names[0]

    # --- the run ------------------------------------------------------------------------------

    def _diff(self) -> None:
        with phases.timed("diff"):
            for name, item in self.items.items():
                if not self.results[name].ok:
                    continue
                for f in _pruned(item):
                    data = files.read(os.path.join(self.stage, f.src)) if f.src else None
                    cur = files.read(f.dest)
                    if cur != data:
                        self.new.setdefault(name, {})[f.dest] = (data, f.mode)
                        self.old.setdefault(name, {})[f.dest] = (cur, f.mode)
                        if f.src:
                            self.staged[f.dest] = os.path.join(self.stage, f.src)

    def _common(self) -> None:
        for f in self.job.common:
            content = files.read(os.path.join(self.stage, f.src)) if f.src else None
            if content is not None and files.read(f.dest) != content:
                files.write(f.dest, content, f.mode)
            os.chmod(os.path.dirname(f.dest), 0o755)  # the service's workers read it

    def _validated(self, pending: set[str]) -> set[str]:
        """Install ``pending``; the names that stay installed (validated)."""
        self.install(pending, self.new)
        ok, message = self.valid()
        if ok:
            return pending
        self.install(pending, self.old)
        base_ok, base_msg = self.valid()
        if not base_ok:
            for n in pending:
                self.results[n] = jobs.ItemResult(False, f"server configuration invalid before this change: {base_msg}")
            return set()
        while pending:
            self.install(pending, self.new)
            ok, message = self.valid()
            if ok:
                return set(pending)
            self.install(pending, self.old)
            bad = owner_of(message, self.items, pending) or self.bisect(sorted(pending))
            culprits = {bad} if bad else set(pending)
            for n in culprits:
                self.results[n] = jobs.ItemResult(False, message[-4000:])
            pending -= culprits
        return set()

    def run(self) -> jobs.Outcome:
        services_ = list(self.job.reload)
        recovered = journal.recover()
        force: list[jobs.Service] = []
        extra: list[jobs.Service] = []
        validators = list(self.job.validate)
        if recovered is not None:
            mine = {sv.name for sv in services_}
            force = [sv for sv in recovered.reload if sv.name in mine]
            extra = [sv for sv in recovered.reload if sv.name not in mine]
            validators += [v for v in recovered.validate if v not in validators]
        self._common()
        with phases.timed("prepare"):
            for name, item in self.items.items():
                self.results[name] = (self.prepare(item) if self.prepare else None) or jobs.ItemResult(True)
        self._diff()
        installed: set[str] = set()
        if self.new:
            old = {d: b for content in self.old.values() for d, (b, _m) in content.items()}
            modes = {d: m for content in self.old.values() for d, (_b, m) in content.items()}
            journal.begin(old, modes, validators, services_ + extra)
            installed = self._validated(set(self.new))
        for n in installed:
            self.results[n] = jobs.ItemResult(True, self.results[n].message, True)
        reloaded: list[str] = []
        if installed or force:
            installed = self._reload(services_, installed, reloaded)
        problem = self._recover_extra(recovered, extra, reloaded) if recovered is not None else ""
        if recovered is not None or self.new:  # the journal exists: the transaction is through
            journal.done()
        return jobs.Outcome(jobs.VERSION, results=self.results, reloaded=reloaded,
                            recovered=None if recovered is None else jobs.Recovered(len(recovered.files), problem))

    def _reload(self, services_: list[jobs.Service], installed: set[str], reloaded: list[str]) -> set[str]:
        sockets = [sock for n in sorted(installed) for sock in self.items[n].sockets]
        for service in services_:
            problem = services.reload(service, sockets)
            reloaded.append(service.name)
            if problem:
                # validated, yet the service did not take it: put the previous files
                # back and bring every service up on them, so the other tenants serve
                self.install(installed, self.old)
                again = [f"{sv.name}: {p}" for sv in services_ if (p := services.reload(sv, []))]
                restored = "; previous files restored" + (f", but {'; '.join(again)}" if again else "")
                for n in installed:
                    self.results[n] = jobs.ItemResult(False, f"{service.name}: {problem}{restored}")
                return set()
        return installed

    def _recover_extra(self, recovered: journal.Entry, extra: list[jobs.Service], reloaded: list[str]) -> str:
        """Services of the rolled-back transaction that this one does not reload."""
        if not extra:
            return ""
        ok, message = self.valid(recovered.validate)
        if not ok:
            return f"rolled-back configuration invalid: {message}"
        problems = [f"{sv.name}: {p}" for sv in extra if (p := services.reload(sv, []))]
        reloaded += [sv.name for sv in extra]
        return "; ".join(problems)
