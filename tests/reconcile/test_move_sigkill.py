"""A move's process killed by a real SIGKILL right after the work of each step, before
the step is journaled (issue 13: "SIGKILL of the controller at each step of a move, then
a re-run: the move completes once, nothing duplicated or lost"). The child process runs
the real step machine (``reconcile.move.Mover``) on a real state store file, with the
engine's in-memory drivers and ``test_move.FakeOpsThatDies`` for the steps' work (the
live move, killed at ``placing``, is tests/trixie/test_live.py's); it kills itself with
SIGKILL. A second process (this one) runs the same command again."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller import model
from controller.drivers import base
from controller.reconcile import engine
from controller.reconcile import move as move_mod
from controller.state import moves, regions
from controller.state import store as state_store

from .memdriver import MemDriver
from .test_move import EXAMPLES, SOURCE, SUB, TARGET, WORKED, FakeOpsThatDies, _steps

ROOT = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 11, 22, 12, tzinfo=dt.UTC)

CHILD = """
import datetime as dt, os, signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from controller import model
from controller.reconcile import engine, move
from controller.state import store as state_store
from reconcile.memdriver import MemDriver
from reconcile.test_move import FakeOpsThatDies, Killed

class Clock:
    now = dt.datetime(2026, 11, 22, 12, tzinfo=dt.UTC)
    def __call__(self):
        return self.now

def done(step):
    with open({log!r}, "a") as f:
        f.write(step + "\\n")

class DiesForReal(FakeOpsThatDies):
    def _do(self, step, mv):
        try:
            out = super()._do(step, mv)
        except Killed:  # its work is done, its step not journaled yet
            done(step)
            os.kill(os.getpid(), signal.SIGKILL)
        done(step)
        return out

clock = Clock()
st = state_store.Store(Path({db!r}), now=clock)
ds = model.load_desired([{examples!r}])
drivers = {{**engine.default_drivers(), "web": MemDriver("web"), "db": MemDriver("db")}}
eng = engine.Engine(st, drivers, clock=clock)
ops = DiesForReal(eng, ds, ({step!r}, "after"))
move.Mover(st, ops, clock=clock).move(ds, {sub!r}, {target!r})
clock.now += dt.timedelta(days=8)
move.Mover(st, ops, clock=clock).due(ds)
sys.exit(3)
"""


@pytest.mark.parametrize("step", [*WORKED, "removed"])
def test_a_move_killed_by_sigkill_after_a_steps_work_completes_once_when_run_again(
        tmp_path: Path, step: str) -> None:
    db, log = tmp_path / "state.db", tmp_path / "steps.log"
    ds = model.load_desired([EXAMPLES])
    drivers: dict[str, base.Driver] = {**engine.default_drivers(), "web": MemDriver("web"), "db": MemDriver("db")}
    with state_store.Store(db, now=lambda: T0) as st:
        assert engine.Engine(st, drivers, clock=lambda: T0).reconcile(ds).ok
        assert st.get_subscription(SUB).server == SOURCE
    code = CHILD.format(tests=str(ROOT / "tests"), log=str(log), db=str(db), examples=str(EXAMPLES), step=step,
                        sub=SUB, target=TARGET)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == -9, proc.stderr  # killed, not ended
    killed = log.read_text().split()
    assert killed[-1] == step

    now = [T0 + (dt.timedelta(days=8) if step == "removed" else dt.timedelta())]
    with state_store.Store(db, now=lambda: now[0]) as st:
        eng = engine.Engine(st, drivers, clock=lambda: now[0])
        ops = FakeOpsThatDies(eng, ds)  # the second process
        out = move_mod.Mover(st, ops, clock=lambda: now[0]).move(ds, SUB, TARGET)
        assert out.ok, out.error
        if step != "removed":
            now[0] += dt.timedelta(days=8)
            move_mod.Mover(st, ops, clock=lambda: now[0]).due(ds)
        assert _steps(st) == list(moves.STEPS)  # every step journaled once, in order
        # the killed step's work is done again (idempotent), every other step's once
        assert killed + ops.calls == [s for s in [*WORKED, "removed"] for _ in range(2 if s == step else 1)]
        assert regions.generation(st, SUB) == 2  # placed once
        assert moves.steps(st) == {SUB: "removed"} and st.get_subscription(SUB).server == TARGET
