"""What drivers need to reach servers: addresses, roles, credentials, the SSH key.

Built once per pass from the desired state and the state directory. The SSH key and the
credentials come from ``controller.provisioning`` (generated once, kept 0600 under
``<state>/ssh`` and ``<state>/secrets``), for every provider alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from controller import provisioning
from controller.model import kinds
from controller.model.desired import DesiredState

#: what a server whose ``os`` is not given runs (bookworm)
_DEFAULT = kinds.RELEASES[kinds.DEFAULT_OS]


@dataclass(frozen=True)
class Server:
    name: str
    region: str
    provider: str
    address: str
    roles: tuple[str, ...]
    ips: tuple[tuple[str, str], ...]  # (address, shared|dedicated)
    #: the PHP-FPM versions the role installs there (its release's: ``kinds.RELEASES``)
    php_versions: tuple[str, ...] = (_DEFAULT.php,)
    #: the PostgreSQL major version of its ``main`` cluster (its release's), which names
    #: the cluster's directories (PITR: ``drivers.backup.pgpitr`` sends it in each job)
    pg_version: str = _DEFAULT.postgresql
    #: ``Server.spec.spare`` (DR-1): configured for its roles, holds no tenant
    spare: bool = False
    #: the Debian codename its ``os`` says it runs (None: not judged); the identity probe
    #: compares it with what the server answers
    suite: str | None = None


@dataclass(frozen=True)
class Region:
    name: str
    timezone: str = "UTC"
    #: ``("all",)`` or the region names backups are copied to (BKP-1)
    copies_to: tuple[str, ...] = ("all",)


@dataclass(frozen=True)
class Context:
    state_dir: Path
    servers: Mapping[str, Server] = field(default_factory=dict)
    regions: Mapping[str, Region] = field(default_factory=dict)

    @classmethod
    def of(cls, ds: DesiredState, state_dir: Path) -> Context:
        return cls(state_dir, {
            name: Server(name, spec.region, spec.provider, spec.address, tuple(spec.roles),
                         tuple((ip.address, ip.type) for ip in spec.ips), (spec.release.php,),
                         spec.release.postgresql, spec.spare, spec.release.suite)
            for name, spec in ds.servers.items()
        }, {
            name: Region(name, str(spec.timezone),
                         ("all",) if spec.backupCopiesTo == "all" else tuple(spec.backupCopiesTo))
            for name, spec in ds.regions.items()
        })

    def secrets(self, server: str) -> dict[str, str]:
        """The server's generated admin credentials (MariaDB, PostgreSQL, PowerDNS)."""
        return provisioning.credentials(self.state_dir, server)

    def ssh_key(self) -> Path:
        """tenantctl's own SSH private key (root's authorized key on every server)."""
        return provisioning.ssh_key(self.state_dir)
