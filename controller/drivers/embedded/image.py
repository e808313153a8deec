"""The server images, one per Debian release (``SUITES``), built without any registry.

Three cached steps per release, each keyed by a hash of its inputs and skipped when its
output exists:

1. ``debootstrap --variant=minbase`` a rootfs of the suite from the Debian mirror this
   machine uses (cached as a directory under the engine root);
2. ``tar -C DIR -c . | docker import`` it as ``tenantctl/base:<suite>`` (and ``:<hash>``);
3. a classic (non-BuildKit) ``docker build --network host`` of the suite's build context,
   tagged ``tenantctl/server:<hash of the base + every file of the build context>`` and
   ``tenantctl/server:<suite>``.

The build context of bookworm is ``playbooks/image/``; another suite's is the same files
with those of ``playbooks/image-<suite>/`` (its Dockerfile: the release's package names)
in their place. bookworm's keys are what they were before trixie existed.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
from docker import errors as docker_errors
from rich import console as rich_console

from controller.drivers.embedded import engine, errors

#: the Debian suites a server image is built for (``kinds.RELEASES`` maps ``Server.spec.os`` here)
SUITES = ("bookworm", "trixie")
SUITE = "bookworm"
"""the default suite (and the one whose mirror the machine's sources name)"""
BASE_REPO = "tenantctl/base"
SERVER_REPO = "tenantctl/server"
SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
FALLBACK_MIRROR = "http://deb.debian.org/debian"
PLAYBOOKS_DIR = Path(__file__).resolve().parents[3] / "playbooks"
CONTEXT_DIR = PLAYBOOKS_DIR / "image"
INPUTS_LABEL = "io.tenantctl.inputs"

_console = rich_console.Console(stderr=True)


def debian_mirror(sources: Path = SOURCES) -> str:
    """The first ``URIs:`` of the machine's deb822 sources that serves bookworm itself (the
    Debian archive: every suite of ``SUITES`` comes from it)."""
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


def _check_suite(suite: str) -> str:
    if suite not in SUITES:
        raise errors.ImageError(f"no server image for Debian {suite!r} (known: {', '.join(SUITES)})")
    return suite


def rootfs_key(mirror: str, suite: str = SUITE) -> str:
    """Hash of everything the debootstrap step depends on."""
    return _digest(b"minbase", b"ca-certificates", _check_suite(suite).encode(), mirror.encode())


def overlay_dir(suite: str, playbooks: Path = PLAYBOOKS_DIR) -> Path | None:
    """``playbooks/image-<suite>/``: the files a suite's build context replaces (none for bookworm)."""
    return None if _check_suite(suite) == SUITE else playbooks / f"image-{suite}"


def context_files(context: Path = CONTEXT_DIR, overlay: Path | None = None) -> dict[str, Path]:
    """The build context: relative name -> file, ``overlay``'s files replacing ``context``'s."""
    files: dict[str, Path] = {}
    for root in (context, overlay):
        if root is not None:
            files.update((str(p.relative_to(root)), p) for p in root.rglob("*") if p.is_file())
    return dict(sorted(files.items()))


def context_key(base_key: str, context: Path = CONTEXT_DIR, overlay: Path | None = None) -> str:
    """Hash of the base image key and every file in the build context (names and bytes)."""
    parts = [base_key.encode()]
    for name, path in context_files(context, overlay).items():
        parts += [name.encode(), path.read_bytes()]
    return _digest(*parts)


def context_tar(files: dict[str, Path]) -> io.BytesIO:
    """The build context as the uncompressed tar ``docker build`` reads (modes kept)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, path in files.items():
            tar.add(str(path), arcname=name, recursive=False)
    buf.seek(0)
    return buf


def _image_exists(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
    except docker_errors.ImageNotFound:
        return False
    return True


def ensure_rootfs(cache: Path, mirror: str, suite: str = SUITE) -> Path:
    """A complete debootstrapped rootfs directory of ``suite`` from ``mirror`` (built once, then reused)."""
    key = rootfs_key(mirror, suite)
    target = cache / f"rootfs-{key}"
    done = cache / f"rootfs-{key}.complete"
    if done.exists() and target.is_dir():
        return target
    shutil.rmtree(target, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    argv = ["debootstrap", "--variant=minbase", "--include=ca-certificates", suite, str(target), mirror]
    log = cache / f"rootfs-{key}.log"
    started = time.monotonic()
    with _console.status(f"debootstrap {suite} from {mirror}"), log.open("wb") as out:
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise errors.ImageError(f"debootstrap failed ({result.returncode}), see {log}:\n{tail}")
    done.write_text(f"{time.monotonic() - started:.1f}\n")
    _console.log(f"debootstrap done in {time.monotonic() - started:.1f}s")
    return target


def ensure_base(client: docker.DockerClient, cache: Path, mirror: str | None = None, suite: str = SUITE) -> str:
    """``tenantctl/base:<key>`` (also tagged ``:<suite>``), imported from the cached rootfs."""
    mirror = mirror or debian_mirror()
    key = rootfs_key(mirror, suite)
    ref = f"{BASE_REPO}:{key}"
    if not _image_exists(client, ref):
        rootfs = ensure_rootfs(cache, mirror, suite)
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
    client.images.get(ref).tag(BASE_REPO, suite)
    return key


def _build_stream(client: docker.DockerClient, ref: str, key: str, files: dict[str, Path]) -> Iterator[dict[str, Any]]:
    stream: Iterator[dict[str, Any]] = client.api.build(
        fileobj=context_tar(files), custom_context=True, tag=ref, network_mode="host", rm=True,
        forcerm=True, pull=False, decode=True, labels={INPUTS_LABEL: key},
    )
    return stream


def ensure_server_image(eng: engine.Engine | None = None, *, context: Path = CONTEXT_DIR, suite: str = SUITE) -> str:
    """Reference of the server image of ``suite``, building whatever step is missing."""
    eng = eng or engine.ensure_engine()
    return ensure_image(eng.client, suite, context=context)


def ensure_image(client: docker.DockerClient, suite: str = SUITE, *, context: Path = CONTEXT_DIR) -> str:
    """``ensure_server_image`` with a client of the running engine."""
    cache = engine.engine_root() / "cache"
    base_key = ensure_base(client, cache, suite=suite)
    overlay = overlay_dir(suite, context.parent)
    files = context_files(context, overlay)
    key = context_key(base_key, context, overlay)
    ref = f"{SERVER_REPO}:{key}"
    if _image_exists(client, ref):
        client.images.get(ref).tag(SERVER_REPO, suite)
        return ref
    started = time.monotonic()
    log = cache / f"build-{key}.log"
    with _console.status(f"docker build {ref} ({suite})") as status, log.open("w") as out:
        for chunk in _build_stream(client, ref, key, files):
            if "error" in chunk:
                out.write(str(chunk["error"]))
                raise errors.ImageError(f"docker build failed: {chunk['error']} (log: {log})")
            text = str(chunk.get("stream", ""))
            out.write(text)
            if text.startswith("Step "):
                status.update(f"docker build {ref}: {text.strip()[:100]}")
    client.images.get(ref).tag(SERVER_REPO, suite)
    _console.log(f"built {ref} ({suite}) in {time.monotonic() - started:.1f}s")
    return ref
