"""Planning: gather (state store -> History), decide (effective.compute), diff
(fingerprints) -> the actions an apply would take. No writes.

Two fingerprints make the no-op path cheap:

* ``inputs``: a digest of everything a subscription's effective spec depends on (its
  document, its plan and add-ons, its customer, its region's servers and date, what
  the store remembers of it, and this code). Unchanged inputs -> the spec is not
  recomputed: the recorded status is the answer.
* ``*`` (WHOLE): a digest of the computed item; per concern, a digest of its slice.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller import digest, effective
from controller.drivers import base
from controller.effective import maintenance
from controller.effective import spec as typed_spec
from controller.effective.history import History
from controller.model.desired import DesiredState
from controller.placement import Placement, Recorded
from controller.state import moves as moves_state
from controller.state import notices
from controller.state import regions as regions_state
from controller.state import store as state_store

WHOLE = state_store.WHOLE_SUBSCRIPTION
INPUTS = "inputs"
#: Keys the engine adds to a status document on top of the computed item.
STATUS_ONLY = ("concerns", "dnsServers", "access", "backup")


def _code_digest() -> str:
    """The code that decides effective specs: a change of it invalidates ``inputs``."""
    root = Path(__file__).resolve().parent.parent
    parts = []
    for pkg in ("model", "effective", "placement"):
        for f in sorted((root / pkg).glob("*.py")):
            parts.append(f.read_bytes())
    return digest.of([p.hex() for p in parts])


CODE = _code_digest()


class Lazy(Mapping[str, Any]):
    """A mapping whose values are parsed on first access: unchanged subscriptions never
    pay for decoding what the store remembers of them."""

    def __init__(self, raw: Mapping[str, Any], parse: Callable[[Any], Any]) -> None:
        self.raw = raw
        self._parse = parse
        self._cache: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key not in self._cache:
            self._cache[key] = self._parse(self.raw[key])
        return self._cache[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def __contains__(self, key: object) -> bool:
        return key in self.raw


class _Texts(Mapping[str, str]):
    """The recorded status documents' texts by name: every name at once, the texts
    (26 MB at 10,000 subscriptions) as ``plan`` asks for them (``load``), or one by one
    while the store is open."""

    def __init__(self, store: state_store.Store) -> None:
        self._store = store
        self._names = store.status_names()
        self._texts: dict[str, str] = {}

    def load(self, names: Iterable[str]) -> None:
        want = [n for n in names if n in self._names and n not in self._texts]
        if want:
            self._texts.update(self._store.status_texts(want))

    def __getitem__(self, name: str) -> str:
        if name not in self._texts:
            self.load([name])
        return self._texts[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names


@dataclass(frozen=True)
class Observed:
    """What past runs left in the store: the History for ``effective``, the raw texts
    that ``inputs`` digests, and the recorded status documents."""

    history: History
    sticky_raw: Mapping[str, Mapping[str, str]]
    status: Lazy


def observe(store: state_store.Store | None) -> Observed:
    """Everything the computation needs from past runs, one query per table."""
    if store is None:
        return Observed(History(), {}, Lazy({}, json.loads))
    subs = store.live_rows()
    sticky_raw = store.all_sticky_raw()
    status = Lazy(_Texts(store), json.loads)
    history = History(
        placements={s.name: Recorded(s.server, s.ip, s.db_servers) for s in subs},
        created={s.name: s.created for s in subs},
        customers={s.name: s.customer for s in subs},
        sticky=Lazy(sticky_raw, lambda groups: {g: json.loads(v) for g, v in groups.items()}),
        transfers={t.name: t.frozen for t in store.all_transfers()},
        last_effective=Lazy(status.raw, lambda text: json.loads(text)["effective"]),
        usage=store.all_usage(),
        evacuated=regions_state.targets(store),
        moves=moves_state.targets(store),
        move_steps=moves_state.steps(store),
        emergency=notices.windows(store),
    )
    return Observed(history, sticky_raw, status)


_DRIVER_CODE: dict[tuple[str, ...], str] = {}


def _files(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts)
        elif p.is_file():
            out.append(p)
    return out


def _driver_code(driver: base.Driver) -> str:
    """Digest of what makes a driver's version. A ``Versioned`` driver names its sources
    (its code, the templates it renders, the naming rules it writes by): a change of one
    of them re-applies that concern only. Others: their package's source."""
    if isinstance(driver, base.Versioned):
        paths = [Path(p).resolve() for p in driver.sources()]
    else:
        mod = sys.modules.get(type(driver).__module__)
        paths = [Path(str(mod.__file__)).parent] if mod is not None and getattr(mod, "__file__", None) else []
    key = tuple(sorted(str(p) for p in paths))
    if key not in _DRIVER_CODE:
        files = _files(paths)
        _DRIVER_CODE[key] = digest.of([[str(f.name), f.read_bytes().hex()] for f in files])
    return _DRIVER_CODE[key]


_DRIVER_IDS: dict[type, str] = {}


def driver_id(driver: base.Driver) -> str:
    """Which driver, in which version, applied a slice (part of every fingerprint); a
    driver class names the same sources for all its instances, read once a process."""
    kind = type(driver)
    if kind not in _DRIVER_IDS:
        _DRIVER_IDS[kind] = f"{kind.__module__}.{kind.__qualname__}@{_driver_code(driver)}"
    return _DRIVER_IDS[kind]


class _Subscriptions(Mapping[str, effective.Subscription]):
    """Every desired subscription: recomputed ones as computed, the others rebuilt
    from their recorded status on first access."""

    def __init__(
        self, computed: dict[str, effective.Subscription], status: Lazy, hist: History, names: list[str]
    ) -> None:
        self._computed = computed
        self._status = status
        self._hist = hist
        self._names = names

    def __getitem__(self, name: str) -> effective.Subscription:
        if name not in self._computed:
            if name not in self._status:
                raise KeyError(name)
            self._computed[name] = _recorded(name, self._status[name], self._hist)
        return self._computed[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def peek(self, name: str) -> effective.Subscription:
        """``self[name]`` without keeping a subscription rebuilt from its record: a
        caller that walks 10,000 of them holds one at a time."""
        if name in self._computed:
            return self._computed[name]
        if name not in self._status.raw:
            raise KeyError(name)
        return _recorded(name, json.loads(self._status.raw[name]), self._hist)


@dataclass
class Planned:
    subscriptions: Mapping[str, effective.Subscription]
    #: desired fingerprints: name -> {WHOLE: .., INPUTS: .., concern: ..}
    fingerprints: dict[str, dict[str, str]]
    #: concerns whose slice changed, per subscription
    changed: dict[str, list[str]]
    actions: dict[str, list[str]]
    deletions: list[str] = field(default_factory=list)
    #: unchanged subscriptions whose ``inputs`` fingerprint only needs recording
    refresh: list[str] = field(default_factory=list)
    #: how many subscriptions were recomputed (the rest had unchanged inputs)
    recomputed: int = 0
    #: subscriptions whose item is their recorded status document without ``STATUS_ONLY``
    #: (unchanged inputs): a front-end may read them from the store as they are
    unchanged: frozenset[str] = frozenset()

    @property
    def has_changes(self) -> bool:
        return bool(self.deletions) or any(self.actions.values())

    def item(self, name: str) -> dict[str, Any]:
        """One subscription's item, without keeping it (see ``_Subscriptions.peek``)."""
        subs = self.subscriptions
        return (subs.peek(name) if isinstance(subs, _Subscriptions) else subs[name]).item


def concern_fingerprints(item: typed_spec.Item, drivers: Mapping[str, base.Driver]) -> dict[str, str]:
    ids = {c: driver_id(d) for c, d in drivers.items()}
    return {c: digest.of([ids[c], d.slice(item)]) for c, d in drivers.items()}


def input_keys(
    ds: DesiredState, now: dt.datetime, observed: Observed, drivers: Mapping[str, base.Driver],
    *, override_windows: bool = False,
) -> dict[str, str]:
    """The ``inputs`` fingerprint of every subscription (see the module docstring); a
    region's maintenance window opening or closing (OPS-2) is an input too, so that
    what waited for it is recomputed then, and so are its announced emergency windows
    (what waits says when it will run)."""
    docs = ds.docs
    hist = observed.history
    code = [CODE, sorted(driver_id(d) for d in drivers.values())]
    regions: dict[str, str] = {}
    for r, region in ds.regions.items():
        today = now.astimezone(zoneinfo.ZoneInfo(region.timezone)).date().isoformat()
        servers = sorted(docs[("Server", s)].digest for s, sp in ds.servers.items() if sp.region == r)
        regions[r] = digest.of([code, docs[("Region", r)].digest, servers, today]
                               + ([hist.evacuated[r]] if r in hist.evacuated else [])
                               + [f"emergency:{s.isoformat()}/{e.isoformat()}" for s, e in hist.emergency.get(r, ())]
                               + ([f"window:{open_}"] if (open_ := maintenance.window_open(
                                   region, now, override=override_windows, emergency=hist.emergency.get(r, ())))
                                  is not None else []))
    out: dict[str, str] = {}
    for name, spec in ds.subscriptions.items():
        rec = hist.placements.get(name)
        created = hist.created.get(name)
        out[name] = digest.of([
            regions.get(spec.region),
            docs[("Subscription", name)].digest,
            docs[("ServicePlan", spec.plan)].digest if spec.plan else None,
            [docs[("AddOnPlan", a)].digest for a in spec.addons],
            docs[("Customer", spec.customer)].digest,
            [rec.server, rec.ip, dict(rec.dbServers)] if rec else None,
            created.isoformat() if created else None,
            hist.customers.get(name),
            observed.sticky_raw.get(name),
            hist.transfers.get(name),
            hist.usage.get(name),
            hist.moves.get(name),
            hist.move_steps.get(name),
        ])
    return out


def recorded_item(status: Mapping[str, Any]) -> dict[str, Any]:
    """The item a status document was made from (without what the engine added)."""
    return {k: v for k, v in status.items() if k not in STATUS_ONLY}


def _recorded(name: str, status: Mapping[str, Any], hist: History) -> effective.Subscription:
    """A subscription whose inputs did not change: its recorded item is the answer."""
    item = recorded_item(status)
    rec = hist.placements.get(name) or Recorded(None, None)
    placement = Placement(rec.server, rec.ip, dict(rec.dbServers))
    return effective.Subscription(name, item, effective.Changes(), placement)


def plan(
    ds: DesiredState,
    now: dt.datetime,
    drivers: Mapping[str, base.Driver],
    store: state_store.Store | None = None,
    observed: Observed | None = None,
    *,
    recorded: bool = True,
    override_windows: bool = False,
) -> Planned:
    """``recorded=False``: the unchanged subscriptions' documents are not read now (a
    front-end that streams them from the store itself, with the store still open, and
    reads any of them later through ``subscriptions`` or ``item`` while it is).
    ``override_windows``: disruptive changes are planned now (``apply --now``, OPS-2)."""
    observed = observed if observed is not None else observe(store)
    hist, status = observed.history, observed.status
    # the whole and inputs fingerprints decide which subscriptions are unchanged; the
    # per-concern ones are read only when some are not (a no-op pass reads 2 rows of 8)
    applied = store.all_fingerprints((INPUTS, WHOLE)) if store is not None else {}
    keys = input_keys(ds, now, observed, drivers, override_windows=override_windows)
    same = {
        n for n, k in keys.items()
        if applied.get(n, {}).get(INPUTS) == k and WHOLE in applied[n] and n in status
    }
    if store is not None and len(same) < len(ds.subscriptions):
        applied = store.all_fingerprints()
    if isinstance(status.raw, _Texts):
        status.raw.load(n for n in ds.subscriptions if n not in same)  # compute reads their last effective
        if recorded:
            status.raw.load(same)  # the result is then usable once the store is closed
    computed = effective.compute(ds, now, hist, names=set(ds.subscriptions) - same,
                                 override_windows=override_windows)
    subs = _Subscriptions(computed, status, hist, sorted(ds.subscriptions))
    known = set(hist.placements)
    fps: dict[str, dict[str, str]] = {}
    changed: dict[str, list[str]] = {}
    actions: dict[str, list[str]] = {}
    refresh: list[str] = []
    for name in subs:
        old = applied.get(name, {})
        if name in same:
            fps[name] = {WHOLE: old[WHOLE], INPUTS: keys[name]}
            changed[name] = []
            actions[name] = []
            continue
        sub = computed[name]
        whole = digest.of(sub.item)
        acts: list[str] = []
        if old.get(WHOLE) == whole and not sub.changes:
            fps[name] = {WHOLE: whole, INPUTS: keys[name]}
            changed[name] = []
            actions[name] = acts
            if old.get(INPUTS) != keys[name]:
                refresh.append(name)
            continue
        per = concern_fingerprints(sub.typed, drivers)
        fps[name] = {WHOLE: whole, INPUTS: keys[name], **per}
        rec = hist.placements.get(name)
        if name not in known:
            acts.append("create")
        if sub.placement.server is not None and (rec is None or rec.server != sub.placement.server):
            acts.append(f"place:{sub.placement.server}" if rec is None or rec.server is None
                        else f"move:{rec.server}->{sub.placement.server}")
        diff = [c for c, fp in per.items() if old.get(c) != fp]
        changed[name] = diff
        acts.extend(f"update:{c}" for c in diff)
        if sub.changes.transfer is not None:
            acts.append("record:transfer")
        acts.extend(f"record:{g}" for g in sorted(sub.changes.sticky_set))
        acts.extend(f"forget:{g}" for g in sorted(sub.changes.sticky_drop))
        if not acts and old.get(WHOLE) != whole:
            acts.append("update:status")
        actions[name] = acts
    deletions = sorted(known - set(subs))
    return Planned(subs, fps, changed, actions, deletions, refresh, recomputed=len(computed),
                   unchanged=frozenset(same))
