"""Provisioning: what tenantctl needs to reach and set up a server, for any provider.

What belongs here: tenantctl's own SSH key (``ssh_key``), the admin credentials it
generates for each server (``credentials``: MariaDB, PostgreSQL, PowerDNS API key), and
the Ansible bootstrap of a host (``bootstrap``: ``playbooks/bootstrap.yml`` run through
ansible-runner over SSH, which also writes the server's identity marker
``/etc/tenantctl/generation``), and the secrets of the backup repositories (``backup``:
the backup CA, each repository server's certificate, each source server's login and
restic password; the role runs the repository server on servers with role ``backup``).
Real hosts (``provider: ssh``) and the embedded development environment's containers
are provisioned the same way.

What does not: containers, the Docker engine, Pebble (``drivers.embedded``, the
development environment, which uses this package), per-tenant work (the concern
drivers). This package may import ``errors`` and ``model`` and does I/O (files under the
state directory, ``ssh-keygen``, ansible-runner); it never imports ``drivers``.

State dir layout: ``ssh/id_ed25519`` (+ ``.pub``, 0600), ``secrets/<server>.json``
(0600), ``secrets/backup/`` (see ``backup``), ``ansible/`` (runner data and artifacts).
"""

from __future__ import annotations

from controller.provisioning import acme, ansible, backup, errors, keys, roles
from controller.provisioning.ansible import Host, HostStats, Target
from controller.provisioning.keys import credentials, ssh_key
from controller.provisioning.roles import bootstrap

__all__ = [
    "Host",
    "HostStats",
    "Target",
    "acme",
    "ansible",
    "backup",
    "bootstrap",
    "credentials",
    "errors",
    "keys",
    "roles",
    "ssh_key",
]
