"""The Kubernetes operator: a kopf front-end over the same engine as the CLI (issue 11).

Belongs here: what turns watched custom resources into engine passes and writes back
what the engine recorded: ``index`` (what kopf indexes, which subscriptions an event
concerns: pure), ``desired`` (the indexed objects through the CLI's loader),
``worker`` (the queue of keys, one pass at a time, status PATCHes, finalizers),
``handlers`` (the kopf registry and settings: glue only), ``lease`` (leader election on
a coordination.k8s.io Lease), ``api`` (the operator's own API writes), ``health``
(probes), ``main`` (one replica), ``options``. Not here: any decision about a
subscription (``controller.reconcile`` and below decide; the CLI runs the same),
the CR schemas and status shapes (``controller.kube``: pure conversions).
"""
