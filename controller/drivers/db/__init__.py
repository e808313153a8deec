"""Tenant databases (the ``db`` concern): MariaDB and PostgreSQL databases and logins,
their stored credentials, locks on suspension, final dumps on deletion, sizes.

What belongs here: the driver (``driver``), pure decisions (``decide``), one module
per engine (``mariadb``, ``postgresql``), the credentials store (``credentials``),
dumps (``dump``) and the translation of backend errors (``failures``). What does not:
deciding which server holds a database (``placement``), the engine's batching.
"""

from __future__ import annotations

from controller.drivers.db.driver import DbDriver, Settings, credentials_of

__all__ = ["DbDriver", "Settings", "credentials_of"]
