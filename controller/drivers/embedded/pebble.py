"""Pebble, the test ACME CA, for the embedded environment (one for all regions).

Runs on the host as ``pebble -config <state>/pebble/config.json -dnsserver IP:53``
(``PEBBLE_VA_NOSLEEP=1``; ``PEBBLE_WFE_NONCEREJECT=0`` so that runs are deterministic:
production CAs' bad nonces are retried by the acme library). HTTP-01 is validated on
port 80 and TLS-ALPN-01 on 443 of the address the name resolves to, through the given
DNS server (the embedded PowerDNS).

State under ``<state>/pebble/``: ``listener-ca.pem``/``listener.pem``/``listener.key``
(the HTTPS certificate of the directory, generated here with ``cryptography``),
``config.json``, ``pebble.pid``, ``pebble.log`` and ``ca-bundle.pem``: Pebble's root of
the current run (it makes a new one on every start, fetched from ``/roots/0`` of the
management port) plus the listener CA, which is what clients need to trust both the
issued certificates and the directory.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from controller.drivers.embedded import errors, processes

PORT = 14000
MANAGEMENT_PORT = 15000


def host(state_dir: Path) -> str:
    """Pebble's own loopback address, one per environment (state directory), so that two
    environments on one machine (a developer's and the tests') never share a CA."""
    h = int.from_bytes(hashlib.blake2b(str(Path(state_dir).resolve()).encode(), digest_size=4).digest(), "big")
    h %= 250 * 250
    return f"127.1.{h // 250}.{h % 250 + 1}"


def directory(state_dir: Path) -> str:
    """The ACME directory URL of the environment's Pebble."""
    return f"https://{host(state_dir)}:{PORT}/dir"
#: issued certificates live 90 days, like Let's Encrypt's (renewal at two thirds)
VALIDITY_SECONDS = 90 * 24 * 3600


def state(state_dir: Path) -> Path:
    path = state_dir.resolve() / "pebble"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def ca_bundle(state_dir: Path) -> Path:
    """The file to verify the directory and issued certificates against."""
    return state_dir.resolve() / "pebble" / "ca-bundle.pem"


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _listener_cert(d: Path, host_ip: str) -> None:
    """A private CA and a certificate for 127.0.0.1/localhost signed by it (once)."""
    names = ("listener.pem", "listener.key", "listener-ca.pem", "listener.host")
    if all((d / n).exists() for n in names) and (d / "listener.host").read_text() == host_ip:
        return
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tenantctl embedded Pebble listener CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address(host_ip))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (d / "listener.key").touch(mode=0o600)
    (d / "listener.key").write_bytes(_key_pem(key))
    (d / "listener.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "listener-ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "listener.host").write_text(host_ip)


def _config(d: Path, host_ip: str) -> dict[str, Any]:
    return {"pebble": {
        "listenAddress": f"{host_ip}:{PORT}", "managementListenAddress": f"{host_ip}:{MANAGEMENT_PORT}",
        "certificate": str(d / "listener.pem"), "privateKey": str(d / "listener.key"),
        "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "", "externalAccountBindingRequired": False,
        "certificateValidityPeriod": VALIDITY_SECONDS,
    }}


def _pid(d: Path) -> int | None:
    """The pid of our running Pebble, or None (a stale pid file or another process)."""
    try:
        pid = int((d / "pebble.pid").read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ValueError, IndexError, ProcessLookupError):
        return None
    return pid if cmdline and cmdline[0].endswith(b"pebble") and str(d / "config.json").encode() in cmdline else None


def _get(url: str, cafile: Path, timeout: float = 2.0) -> bytes:
    ctx = ssl.create_default_context(cafile=str(cafile))
    with urllib.request.urlopen(url, timeout=timeout, context=ctx) as resp:
        data: bytes = resp.read()
        return data


def _wait_and_fetch_root(d: Path, host_ip: str, timeout: float = 15.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _get(f"https://{host_ip}:{PORT}/dir", d / "listener-ca.pem")
            return _get(f"https://{host_ip}:{MANAGEMENT_PORT}/roots/0", d / "listener-ca.pem")
        except OSError as exc:
            if time.monotonic() > deadline:
                log = (d / "pebble.log").read_text(errors="replace")[-1500:] if (d / "pebble.log").exists() else ""
                raise errors.EmbeddedError(f"pebble did not answer in {timeout:.0f}s: {exc}\n{log}") from exc
            time.sleep(0.05)


def up(state_dir: Path, dns_server: str | None) -> Path:
    """Start Pebble unless ours already runs with the same configuration (idempotent);
    returns the CA bundle path (rewritten after every start)."""
    binary = shutil.which("pebble")
    if binary is None:
        raise errors.EmbeddedError("pebble is not installed (apt-get install pebble)")
    d = state(state_dir)
    host_ip = host(state_dir)
    _listener_cert(d, host_ip)
    config = json.dumps(_config(d, host_ip), indent=2, sort_keys=True)
    argv = [binary, "-config", str(d / "config.json")]
    if dns_server:
        argv += ["-dnsserver", dns_server]
    wanted = hashlib.sha256(json.dumps([config, argv]).encode()).hexdigest()
    pid = _pid(d)
    mark = d / "running.sha256"
    if pid is not None and mark.exists() and mark.read_text() == wanted and ca_bundle(state_dir).exists():
        return ca_bundle(state_dir)
    if pid is not None:
        _stop(pid)
    (d / "config.json").write_text(config + "\n")
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    # detached (its own session, parent init): it outlives this process, no Popen to reap
    launch = 'log="$1"; shift; setsid "$@" </dev/null >>"$log" 2>&1 & echo $!'
    done = subprocess.run(["sh", "-c", launch, "launch", str(d / "pebble.log"), *argv], env=env, cwd=d,
                          capture_output=True, text=True, check=True, timeout=10)
    pid = int(done.stdout.strip())
    (d / "pebble.pid").write_text(f"{pid}\n")
    try:
        root = _wait_and_fetch_root(d, host_ip)
    except errors.EmbeddedError:
        _stop(pid)
        raise
    bundle = ca_bundle(state_dir)
    tmp = bundle.with_suffix(".tmp")
    tmp.write_bytes(root.strip() + b"\n" + (d / "listener-ca.pem").read_bytes())
    tmp.replace(bundle)
    mark.write_text(wanted)
    return bundle


def _stop(pid: int, timeout: float = 5.0) -> None:
    processes.stop(pid, timeout)


def down(state_dir: Path) -> bool:
    """Stop our Pebble; True if one was running."""
    d = state_dir.resolve() / "pebble"
    pid = _pid(d) if d.is_dir() else None
    if pid is None:
        return False
    _stop(pid)
    (d / "pebble.pid").unlink(missing_ok=True)
    (d / "running.sha256").unlink(missing_ok=True)
    return True


def status(state_dir: Path) -> dict[str, Any]:
    d = state_dir.resolve() / "pebble"
    running = d.is_dir() and _pid(d) is not None
    bundle = ca_bundle(state_dir)
    return {"running": running, "directory": directory(state_dir),
            "caBundle": str(bundle) if running and bundle.exists() else None}
