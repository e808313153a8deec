"""Properties of WorkQueue, checked by hypothesis against a model, plus real threads.

The model: ``owed`` = keys that must still be handed out (added, or due, since they
were last handed out); ``held`` = handed out and not done; ``due`` = earliest timer per
key. Then, after any sequence of operations:

* get() never returns a key in ``held`` (no key is handed out twice concurrently);
* get() returns a key iff ``owed - held`` is non-empty, and one of those (progress);
* draining (advance time, get/done until empty) hands out every owed key and every
  pending timer (every added key is eventually handed out).
"""

from __future__ import annotations

import random
import threading

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from controller import clock
from controller.reconcile import queue

KEYS = st.sampled_from(["a", "b", "c", "d"])


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = clock.FakeClock()
        self.q = queue.WorkQueue[str](clock=self.clock, base_delay=1.0, max_delay=8.0)
        self.owed: set[str] = set()
        self.held: set[str] = set()
        self.due: dict[str, float] = {}

    def promote(self) -> None:
        now = self.clock.now()
        for key, at in list(self.due.items()):
            if at <= now:
                del self.due[key]
                self.owed.add(key)

    def timer(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.owed.add(key)
            return
        at = self.clock.now() + delay
        self.due[key] = min(at, self.due.get(key, at))

    @rule(key=KEYS)
    def add(self, key: str) -> None:
        self.q.add(key)
        self.owed.add(key)

    @rule(key=KEYS, delay=st.sampled_from([-1.0, 0.0, 0.5, 1.0, 3.0, 10.0]))
    def add_after(self, key: str, delay: float) -> None:
        self.q.add_after(key, delay)
        self.timer(key, delay)

    @rule(key=KEYS)
    def add_rate_limited(self, key: str) -> None:
        delay = self.q.add_rate_limited(key)
        self.timer(key, delay)

    @rule(key=KEYS)
    def forget(self, key: str) -> None:
        self.q.forget(key)
        assert self.q.num_requeues(key) == 0

    @rule(dt=st.sampled_from([0.25, 0.5, 1.0, 2.0, 5.0]))
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)

    @rule()
    def get(self) -> None:
        self.promote()
        key = self.q.get(0)
        ready = self.owed - self.held
        if key is None:
            assert not ready, f"{ready} owed but not handed out"
            return
        assert key not in self.held, f"{key} handed out twice concurrently"
        assert key in ready
        self.held.add(key)
        self.owed.discard(key)

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def done(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.held)))
        self.q.done(key)
        self.held.discard(key)

    @invariant()
    def len_matches_model(self) -> None:
        self.promote()
        assert self.q.len() == len(self.owed - self.held)
        assert self.q.processing() == self.held

    def teardown(self) -> None:
        # Drain: every owed key and every pending timer is eventually handed out.
        for key in list(self.held):
            self.q.done(key)
            self.held.discard(key)
        self.clock.advance(1000)
        self.promote()
        handed: list[str] = []
        while (key := self.q.get(0)) is not None:
            handed.append(key)
            self.q.done(key)
        assert sorted(handed) == sorted(self.owed), "a key was lost or handed out twice"


TestQueueMachine = QueueMachine.TestCase
TestQueueMachine.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


@settings(deadline=None)  # timing under CI load is not what these test
@given(keys=st.lists(KEYS, min_size=1, max_size=30))
def test_deduplication(keys: list[str]) -> None:
    q = queue.WorkQueue[str](clock=clock.FakeClock())
    for key in keys:
        q.add(key)
    handed = []
    while (key := q.get(0)) is not None:
        handed.append(key)
    assert handed == list(dict.fromkeys(keys))  # each once, in first-add order


@settings(deadline=None)  # timing under CI load is not what these test
@given(
    base=st.floats(min_value=0.001, max_value=10),
    factor=st.floats(min_value=1, max_value=10_000),
    n=st.integers(min_value=1, max_value=2_000),
)
def test_backoff_is_monotone_and_capped(base: float, factor: float, n: int) -> None:
    cap = base * factor
    backoff = queue.ExponentialBackoff(base, cap)
    assert backoff.delay(1) == base
    assert backoff.delay(0) == 0.0
    assert backoff.delay(n) <= backoff.delay(n + 1) <= cap


@settings(max_examples=25, deadline=None)
@given(
    batches=st.lists(st.lists(st.integers(0, 15), max_size=20), min_size=1, max_size=15),
    workers=st.integers(1, 6),
)
def test_real_threads_never_share_a_key_and_finish_everything(batches: list[list[int]], workers: int) -> None:
    """Producers and workers on real threads; the queue is the only synchronisation."""
    q = queue.WorkQueue[int]()
    lock = threading.Lock()
    active: set[int] = set()
    overlaps: list[int] = []
    last_handled: dict[int, int] = {}  # key -> generation seen by the last hand-out
    generation: dict[int, int] = {}  # key -> how many times it was added
    rng = random.Random(0)

    def worker() -> None:
        while (key := q.get()) is not None:
            with lock:
                if key in active:
                    overlaps.append(key)
                active.add(key)
                last_handled[key] = generation[key]
            if rng.random() < 0.3:
                threading.Event().wait(0.0005)
            with lock:
                active.discard(key)
            q.done(key)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for batch in batches:
        for key in batch:
            with lock:
                generation[key] = generation.get(key, 0) + 1
            q.add(key)
    # level-triggered liveness: every key is handled at least once after its last add
    deadline = threading.Event()
    for _ in range(2000):
        with lock:
            if all(last_handled.get(k) == g for k, g in generation.items()) and q.len() == 0:
                break
        deadline.wait(0.002)
    q.shutdown()
    for t in threads:
        t.join(5)
    assert overlaps == []
    assert {k: last_handled.get(k) for k in generation} == generation


def test_many_threads_many_keys() -> None:
    """A bigger run: 8 workers, 4 producers, 2,000 adds over 200 keys."""
    q = queue.WorkQueue[str]()
    lock = threading.Lock()
    active: set[str] = set()
    handled: dict[str, int] = {}
    overlaps = []

    def worker() -> None:
        while (key := q.get()) is not None:
            with lock:
                if key in active:
                    overlaps.append(key)
                active.add(key)
                handled[key] = handled.get(key, 0) + 1
            with lock:
                active.discard(key)
            q.done(key)

    def producer(seed: int) -> None:
        r = random.Random(seed)
        for _ in range(500):
            q.add(f"s{r.randrange(200)}.example")

    workers = [threading.Thread(target=worker) for _ in range(8)]
    producers = [threading.Thread(target=producer, args=(i,)) for i in range(4)]
    for t in workers + producers:
        t.start()
    for t in producers:
        t.join()
    for _ in range(5000):
        if q.len() == 0 and not q.processing():
            break
        threading.Event().wait(0.001)
    q.shutdown()
    for t in workers:
        t.join(5)
    assert overlaps == []
    assert len(handled) == 200
