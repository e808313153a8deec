"""The bootstrap of a server: ``playbooks/bootstrap.yml`` (role ``tenantctl_server``).

Packages, base configuration and the services of the server's roles, each bound only to
the server's own address, with the admin logins of ``keys.credentials``; the role also
writes the server's identity marker ``/etc/tenantctl/generation`` (``MARKER``: a random
id made once, never rewritten), the backup CA on every server and, on servers with role
``backup``, the restic repository server (``backup``). Idempotent: a second run changes
nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from controller.provisioning import ansible, backup, keys

PLAYBOOK = "bootstrap.yml"
ROLE = "tenantctl_server"
#: the identity marker bootstrap writes on every server
MARKER = "/etc/tenantctl/generation"


def sources() -> list[Path]:
    """Every file the bootstrap's outcome depends on: the playbook and the role's files."""
    root = ansible.PLAYBOOKS_DIR
    return sorted(p for p in [root / PLAYBOOK, *(root / "roles" / ROLE).rglob("*")] if p.is_file())


def digest() -> str:
    """A digest of ``sources()`` (names and bytes): changes when the bootstrap does."""
    h = hashlib.sha256()
    root = ansible.PLAYBOOKS_DIR
    for path in sources():
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def hostvars(state_dir: Path, target: ansible.Target) -> dict[str, Any]:
    """The role's per-host variables: the server's generated admin credentials, the
    environment's backup CA and, on a server with role ``backup``, its repository
    server's certificate and key (``backup``)."""
    creds = keys.credentials(state_dir, target.name)
    found: dict[str, Any] = {
        "tenantctl_mariadb_admin_user": creds["mariadb_admin_user"],
        "tenantctl_mariadb_admin_password": creds["mariadb_admin_password"],
        "tenantctl_postgresql_admin_user": creds["postgresql_admin_user"],
        "tenantctl_postgresql_admin_password": creds["postgresql_admin_password"],
        "tenantctl_pdns_api_key": creds["pdns_api_key"],
        "tenantctl_mariadb_exporter_password": creds["mariadb_exporter_password"],
        "tenantctl_postgresql_exporter_password": creds["postgresql_exporter_password"],
        "tenantctl_backup_ca": backup.ca_pem(state_dir),
        "tenantctl_backup_port": backup.PORT,
    }
    if "backup" in target.roles:
        cert, key = backup.server_cert(state_dir, target.name, target.address)
        found |= {"tenantctl_backup_cert": cert, "tenantctl_backup_key": key}
    return found


def bootstrap(targets: Iterable[ansible.Target], state_dir: Path) -> dict[str, ansible.HostStats]:
    """Run the bootstrap playbook on ``targets`` (all at once) and return per-host counts.

    Root on each target must accept tenantctl's key (``keys.ssh_key(state_dir)``).
    """
    chosen: Sequence[ansible.Target] = list(targets)
    if not chosen:
        return {}
    return ansible.run_playbook(PLAYBOOK, chosen, state_dir,
                                hostvars={t.name: hostvars(state_dir, t) for t in chosen})
