"""Reconciliation: turning desired state into actions, one subscription key at a time.

Belongs here: the level-triggered machinery that decides *when* and *how often* to
reconcile (``queue``: a client-go style work queue with per-key exponential backoff;
``ratelimit``: token buckets per external dependency; ``clock``: the time source they
share, with a fake clock for tests), and the engine that compares fingerprints, plans
and calls drivers (``engine``, ``planner``, ``fingerprint``).

Does not belong here: I/O against servers (that is ``drivers``), parsing the desired
state (``model``), computing effective values or placement (``effective``,
``placement``), metrics exposition (``controller.metrics``: the queue only calls a small
hook protocol so it does not import metrics). Front-ends (CLI, file watchers, kopf
handlers, timers) only *enqueue keys*; they never reconcile themselves.
"""
