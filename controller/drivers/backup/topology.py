"""Where backups go: each region's repository server and each source server's targets.

A region's repository server is its first server (by name) with the ``backup`` role;
a source server backs up into its own region's repository, then copies into the
repository of every region its region's ``backupCopiesTo`` names (``all``: every other
region that has a repository server; BKP-1, BKP-3). A spare server (``Server.spec.spare``,
DR-1) holds no tenant: it is no source (no repository login, nothing backed up); the DR
drill restores into it with the logins of the servers it reads. A region without a repository
server cannot hold backups: its sources fall back to copying only (``local`` None) and
the run says so. One place for these facts: the runner, rotation, drills, restores,
status and metrics all ask here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from controller import provisioning
from controller.agent import backupjobs
from controller.drivers.context import Context


@dataclass(frozen=True)
class Topology:
    ctx: Context
    #: region -> its repository server's name
    repositories: Mapping[str, str]
    #: region -> the regions its backups are copied to
    copies: Mapping[str, tuple[str, ...]]
    #: region -> IANA time zone (schedules run in the region's time)
    timezones: Mapping[str, str]

    @classmethod
    def of(cls, ctx: Context) -> Topology:
        repos: dict[str, str] = {}
        for name in sorted(ctx.servers):
            srv = ctx.servers[name]
            if "backup" in srv.roles:
                repos.setdefault(srv.region, name)
        copies: dict[str, tuple[str, ...]] = {}
        for region, spec in ctx.regions.items():
            wanted = [r for r in sorted(ctx.regions) if r != region] if spec.copies_to == ("all",) \
                else list(spec.copies_to)
            copies[region] = tuple(r for r in wanted if r in repos and r != region)
        return cls(ctx, repos, copies, {r: s.timezone for r, s in ctx.regions.items()})

    @property
    def state_dir(self) -> Path:
        return self.ctx.state_dir

    def region_of(self, server: str) -> str:
        return self.ctx.servers[server].region

    def local_region(self, server: str) -> str | None:
        """The region a server's snapshots are first taken into (its own), if it has a repository."""
        region = self.region_of(server)
        return region if region in self.repositories else None

    def target_regions(self, server: str) -> tuple[str, ...]:
        """The other regions a server's snapshots are copied to."""
        return self.copies.get(self.region_of(server), ())

    def regions_of(self, server: str) -> tuple[str, ...]:
        """Every region that should hold a server's snapshots, its own first."""
        local = self.local_region(server)
        return ((local,) if local else ()) + self.target_regions(server)

    def repo(self, source: str, region: str) -> backupjobs.Repo:
        """The client's view of ``source``'s repository in ``region`` (REST over TLS)."""
        host = self.ctx.servers[self.repositories[region]]
        password = provisioning.backup.login_password(self.state_dir, source)
        return backupjobs.Repo(region=region,
                               url=provisioning.backup.repo_url(source, password, host.address),
                               password=provisioning.backup.repo_password(self.state_dir, source))

    def owner_repo(self, source: str, region: str) -> backupjobs.Repo:
        """The repository server's own view of ``source``'s repository (a local path)."""
        return backupjobs.Repo(region=region, url=provisioning.backup.owner_path(source),
                               password=provisioning.backup.repo_password(self.state_dir, source), owner=True)

    def sources(self) -> list[str]:
        """Every server that may hold tenants' data: a web or database role, not a spare."""
        return sorted(n for n, s in self.ctx.servers.items()
                      if {"web", "db-mariadb", "db-postgresql"} & set(s.roles) and not s.spare)
