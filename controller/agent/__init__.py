"""The agent library: the code tenantctl runs ON a server (standard library only).

Shipped once per server as a zipapp keyed by its digest (``bundle``) and cached there as
``/var/lib/tenantctl/agent/<digest>.pyz``; each concern's agent (``controller/drivers/
hosting/agent.py``, ``controller/drivers/tls/agent.py``, ``controller/drivers/backup/
agent.py``) is a thin entry point on it.
One run reads one job (``jobs``: versioned dataclasses, JSON in) and prints one JSON
result (``main``).

What belongs here: files (atomic write, digest, mode and owner: ``files``), the journal
of an unfinished transaction (``journal``), the server's agent lock (``lock``), service
reloads verified by a new worker generation (``services``), the transactional install
with validation, bisection and rollback (``transaction``), drift checks (``check``),
phase timings (``phases``), and for backups the job format (``backupjobs``), running
restic without a secret on a command line (``restic``) and the per-table sums and file
manifests a restore drill compares (``dumpstats``). What does not: anything that needs a third-party package or
the controller (this package imports nothing outside the standard library and itself;
``bundle`` is the controller's side and is not needed on servers).
"""
