"""Run a playbook of ``playbooks/`` against hosts with ansible-runner over SSH.

Each run writes its own inventory (``ansible_host`` = the host's address, root with
tenantctl's key, per-host variables given by the caller) into a private data directory
under the state dir, keeps a few artifact sets (``rotate_artifacts``), and returns
per-host counts. A failed or unreachable host raises ``PlaybookError`` carrying the host, name
and message of the failed task that stopped it.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import ansible_runner

from controller.provisioning import errors, keys

PLAYBOOKS_DIR = Path(__file__).resolve().parents[2] / "playbooks"
KEEP_ARTIFACTS = 5


class Target(Protocol):
    """A host to run a playbook on (a ``Server`` of the desired state, any provider)."""

    @property
    def name(self) -> str: ...

    @property
    def address(self) -> str: ...

    @property
    def roles(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class Host:
    """A ``Target`` made of plain fields (a ``Server`` of the desired state)."""

    name: str
    address: str
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostStats:
    """Task counts of one host in one run (the PLAY RECAP line)."""

    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0


def control_dir(state_dir: Path, *, create: bool = True) -> Path:
    """Short directory for SSH ControlMaster sockets (unix socket paths are limited to 108 bytes)."""
    tag = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:8]
    path = Path("/tmp") / f"tenantctl-cp-{os.getuid()}-{tag}"
    if create:
        path.mkdir(mode=0o700, exist_ok=True)
    return path


def forget(state_dir: Path) -> None:
    """Remove the SSH control directory of ``state_dir`` (its masters end with the servers)."""
    path = control_dir(state_dir, create=False)
    if not path.is_dir():
        return
    for sock in path.iterdir():
        sock.unlink(missing_ok=True)
    path.rmdir()


def inventory(targets: Iterable[Target], key: Path, hostvars: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """An inventory with one host per target, named after it."""
    hosts: dict[str, Any] = {}
    for target in targets:
        hosts[target.name] = {
            "ansible_host": target.address,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(key),
            "ansible_python_interpreter": "/usr/bin/python3",
            "tenantctl_address": target.address,
            "tenantctl_roles": list(target.roles),
            **hostvars.get(target.name, {}),
        }
    return {"all": {"hosts": hosts}}


def run_playbook(
    playbook: str,
    targets: Iterable[Target],
    state_dir: Path,
    *,
    hostvars: Mapping[str, Mapping[str, Any]] | None = None,
    project_dir: Path = PLAYBOOKS_DIR,
) -> dict[str, HostStats]:
    """Run ``playbook`` on ``targets``; return ``{host: HostStats}`` or raise ``PlaybookError``."""
    targets = list(targets)
    key = keys.ssh_key(state_dir)
    data_dir = state_dir / "ansible"
    home = data_dir / "home"
    for path in (data_dir, home, home / "tmp"):
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    envvars = {
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir(state_dir)),
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=30s -o UserKnownHostsFile=/dev/null",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_FORKS": "10",
        # ansible-playbook and the ssh it runs come from our venv first, then the system.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)]),
    }
    runner = ansible_runner.run(
        private_data_dir=str(data_dir),
        project_dir=str(project_dir),
        playbook=playbook,
        inventory=inventory(targets, key, hostvars or {}),
        envvars=envvars,
        rotate_artifacts=KEEP_ARTIFACTS,
        quiet=True,
    )
    stats = _stats(runner.stats or {}, [t.name for t in targets])
    if runner.status != "successful" or any(s.failed or s.unreachable for s in stats.values()):
        raise failure(runner)
    return stats


def _stats(raw: Mapping[str, Mapping[str, int]], hosts: list[str]) -> dict[str, HostStats]:
    return {
        host: HostStats(
            ok=raw.get("ok", {}).get(host, 0),
            changed=raw.get("changed", {}).get(host, 0),
            failed=raw.get("failures", {}).get(host, 0),
            unreachable=raw.get("dark", {}).get(host, 0),
            skipped=raw.get("skipped", {}).get(host, 0),
        )
        for host in hosts
    }


def failure(runner: Any) -> errors.PlaybookError:
    """The failed (not ignored) task that stopped a host, as an exception.

    A failure inside a block with a ``rescue`` is followed by the rescue's own tasks, so a
    host's last failure is the one that stopped it (the rescue's message carries what it
    gathered); of several hosts, the one that stopped first is named.
    """
    fatal: dict[str, tuple[int, str, dict[str, Any]]] = {}
    for index, event in enumerate(runner.events):
        kind = event.get("event")
        data = event.get("event_data", {})
        if kind not in ("runner_on_failed", "runner_on_unreachable") or data.get("ignore_errors"):
            continue
        fatal[str(data.get("host", ""))] = (index, kind, data)
    if not fatal:
        return errors.PlaybookError(f"ansible-runner finished with status {runner.status} (rc {runner.rc})")
    _, kind, data = min(fatal.values(), key=lambda item: item[0])
    res = data.get("res", {})
    message = str(res.get("msg") or "").strip()
    detail = str(res.get("stderr") or res.get("module_stderr") or "").strip()
    if detail and detail not in message:
        message = f"{message}: {detail}" if message else detail
    return errors.PlaybookError(
        message or "failed",
        host=str(data.get("host", "")),
        task=str(data.get("task", "")),
        status="unreachable" if kind == "runner_on_unreachable" else "failed",
    )
