"""Usage figures from the servers (OPS-4, RES-2): traffic per subscription and day from
its nginx access logs, and the size of its web space.

``agent`` is the stdlib-only program that runs ON a web server (entry ``usage``),
``collect`` runs it on every web server in parallel and records the figures in the
state store (``controller.state.usage``), ``schedule`` is the thread of ``tenantctl
run`` that collects on a period. Database sizes are not measured here: the db driver
measures them (``databaseMB``, one query per database server) and the collection copies
the day's maximum into the history. What does not belong here: the report's shape
(``controller.cli.report``), the overuse decision (``controller.effective.lifecycle``).
"""
