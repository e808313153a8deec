"""The server image, built without any registry.

Three cached steps, each keyed by a hash of its inputs and skipped when its output exists:

1. ``debootstrap --variant=minbase`` a bookworm rootfs from the Debian mirror this machine
   uses (cached as a directory under the engine root);
2. ``tar -C DIR -c . | docker import`` it as ``tenantctl/base:bookworm`` (and ``:<hash>``);
3. a classic (non-BuildKit) ``docker build --network host`` of ``playbooks/image/``, tagged
   ``tenantctl/server:<hash of the base + every file of the build context>``.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
from docker import errors as docker_errors
from rich import console as rich_console

from controller.drivers.embedded import engine, errors

SUITE = "bookworm"
BASE_REPO = "tenantctl/base"
SERVER_REPO = "tenantctl/server"
SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
FALLBACK_MIRROR = "http://deb.debian.org/debian"
CONTEXT_DIR = Path(__file__).resolve().parents[3] / "playbooks" / "image"
INPUTS_LABEL = "io.tenantctl.inputs"

_console = rich_console.Console(stderr=True)


def debian_mirror(sources: Path = SOURCES) -> str:
    """The first ``URIs:`` of the machine's deb822 sources that serves the suite itself."""
    if sources.exists():
        for stanza in sources.read_text().split("\n\n"):
            fields = dict(
                line.split(":", 1) for line in stanza.splitlines() if ":" in line and not line.startswith("#")
            )
            suites = fields.get("Suites", "").split()
            uris = fields.get("URIs", "").split()
            if SUITE in suites and uris:
                return uris[0].strip()
    return FALLBACK_MIRROR


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:16]


def rootfs_key(mirror: str) -> str:
    """Hash of everything the debootstrap step depends on."""
    return _digest(b"minbase", b"ca-certificates", SUITE.encode(), mirror.encode())


def context_key(base_key: str, context: Path = CONTEXT_DIR) -> str:
    """Hash of the base image key and every file in the build context (names and bytes)."""
    parts = [base_key.encode()]
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        parts += [str(path.relative_to(context)).encode(), path.read_bytes()]
    return _digest(*parts)


def _image_exists(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
    except docker_errors.ImageNotFound:
        return False
    return True


def ensure_rootfs(cache: Path, mirror: str) -> Path:
    """A complete debootstrapped rootfs directory for ``mirror`` (built once, then reused)."""
    key = rootfs_key(mirror)
    target = cache / f"rootfs-{key}"
    done = cache / f"rootfs-{key}.complete"
    if done.exists() and target.is_dir():
        return target
    shutil.rmtree(target, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    argv = ["debootstrap", "--variant=minbase", "--include=ca-certificates", SUITE, str(target), mirror]
    log = cache / f"rootfs-{key}.log"
    started = time.monotonic()
    with _console.status(f"debootstrap {SUITE} from {mirror}"), log.open("wb") as out:
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise errors.ImageError(f"debootstrap failed ({result.returncode}), see {log}:\n{tail}")
    done.write_text(f"{time.monotonic() - started:.1f}\n")
    _console.log(f"debootstrap done in {time.monotonic() - started:.1f}s")
    return target


def ensure_base(client: docker.DockerClient, cache: Path, mirror: str | None = None) -> str:
    """``tenantctl/base:<key>`` (also tagged ``:bookworm``), imported from the cached rootfs."""
    mirror = mirror or debian_mirror()
    key = rootfs_key(mirror)
    ref = f"{BASE_REPO}:{key}"
    if not _image_exists(client, ref):
        rootfs = ensure_rootfs(cache, mirror)
        started = time.monotonic()
        with _console.status(f"docker import {ref}"):
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            assert tar.stdout is not None
            try:
                client.api.import_image_from_stream(tar.stdout, repository=BASE_REPO, tag=key)
            finally:
                tar.stdout.close()
                if tar.wait() != 0:
                    raise errors.ImageError(f"tar of {rootfs} failed ({tar.returncode})")
        _console.log(f"imported {ref} in {time.monotonic() - started:.1f}s")
    client.images.get(ref).tag(BASE_REPO, SUITE)
    return key


def _build_stream(client: docker.DockerClient, ref: str, key: str, context: Path) -> Iterator[dict[str, Any]]:
    stream: Iterator[dict[str, Any]] = client.api.build(
        path=str(context), tag=ref, network_mode="host", rm=True, forcerm=True, pull=False,
        decode=True, labels={INPUTS_LABEL: key},
    )
    return stream


def ensure_server_image(eng: engine.Engine | None = None, *, context: Path = CONTEXT_DIR) -> str:
    """Reference of the server image, building whatever step is missing."""
    eng = eng or engine.ensure_engine()
    cache = engine.engine_root() / "cache"
    base_key = ensure_base(eng.client, cache)
    key = context_key(base_key, context)
    ref = f"{SERVER_REPO}:{key}"
    if _image_exists(eng.client, ref):
        return ref
    started = time.monotonic()
    log = cache / f"build-{key}.log"
    with _console.status(f"docker build {ref}") as status, log.open("w") as out:
        for chunk in _build_stream(eng.client, ref, key, context):
            if "error" in chunk:
                out.write(str(chunk["error"]))
                raise errors.ImageError(f"docker build failed: {chunk['error']} (log: {log})")
            text = str(chunk.get("stream", ""))
            out.write(text)
            if text.startswith("Step "):
                status.update(f"docker build {ref}: {text.strip()[:100]}")
    _console.log(f"built {ref} in {time.monotonic() - started:.1f}s")
    return ref
