"""Keys, certificates and per-subscription renewal state under ``<state>/tls`` (0600).

Layout: ``accounts/<ca>-<account>/{key.json,regr.json}``; ``certs/<sub>/{privkey.pem,
fullchain.pem}`` (the last certificate that was issued: it keeps serving whatever
happens to later orders); ``renew/<sub>`` (a renewal forced by ``tenantctl tls renew``).
Failures and their backoff are not kept here: the engine's state store holds the one
backoff record (``<sub>/tls``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from controller.drivers import naming
from controller.drivers.tls import decide


def _private(path: Path) -> Path:
    """``path`` as a directory; every directory this creates is 0700."""
    if not path.is_dir():
        _private(path.parent)
        path.mkdir(exist_ok=True, mode=0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Atomically write ``data`` readable by its owner only."""
    _private(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def cert_info(fullchain: bytes) -> decide.CertInfo:
    leaf = x509.load_pem_x509_certificate(fullchain)
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return decide.CertInfo(names, leaf.not_valid_before_utc, leaf.not_valid_after_utc)


def read_roots(path: str | None) -> bytes | None:
    """The CA's current roots (PEM) or None when there is no file to check against: a
    missing or unreadable file disables the check rather than re-issuing everything."""
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


@functools.lru_cache(maxsize=4096)
def chains_to(fullchain: bytes, roots: bytes) -> bool:
    """Whether the chain's top certificate is one of ``roots`` or was signed by one of
    them (cached: every resync asks for every certificate). A roots file without
    certificates answers True: nothing to judge by."""
    try:
        anchors = x509.load_pem_x509_certificates(roots)
    except ValueError:
        return True
    try:
        top = x509.load_pem_x509_certificates(fullchain)[-1]
    except ValueError:
        return False
    for anchor in anchors:
        if top == anchor:
            return True
        if top.issuer != anchor.subject:
            continue
        try:
            top.verify_directly_issued_by(anchor)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


class Store:
    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "tls"

    # --- accounts ---------------------------------------------------------------------

    def account_dir(self, directory: str, account: str) -> Path:
        tag = hashlib.blake2b(directory.encode(), digest_size=5).hexdigest()
        if not account.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"not an account name: {account!r}")
        return _private(self.root / "accounts" / f"{tag}-{account}")

    # --- certificates -----------------------------------------------------------------

    def _cert_dir(self, sub: str) -> Path:
        naming.system_user(sub)  # refuses names unsafe as a directory
        if sub.strip(".") == "":
            raise ValueError(f"not a subscription name: {sub!r}")
        return self.root / "certs" / sub

    def certificate(self, sub: str) -> tuple[bytes, bytes] | None:
        """(fullchain, key) of the last issued certificate, or None."""
        d = self._cert_dir(sub)
        try:
            return (d / "fullchain.pem").read_bytes(), (d / "privkey.pem").read_bytes()
        except FileNotFoundError:
            return None

    def info(self, sub: str, roots: bytes | None = None) -> decide.CertInfo | None:
        """What the stored certificate covers and when; with ``roots``, also whether it
        still chains to them (``CertInfo.anchored``)."""
        pair = self.certificate(sub)
        if pair is None:
            return None
        info = cert_info(pair[0])
        if roots is not None and not chains_to(pair[0], roots):
            info = dataclasses.replace(info, anchored=False)
        return info

    def save_certificate(self, sub: str, fullchain: bytes, key: bytes) -> None:
        d = _private(self._cert_dir(sub))
        write_private(d / "privkey.pem.next", key)
        write_private(d / "fullchain.pem.next", fullchain)
        # key first, then chain: a reader pairing them sees the old pair or the new one
        (d / "privkey.pem.next").replace(d / "privkey.pem")
        (d / "fullchain.pem.next").replace(d / "fullchain.pem")

    def forget(self, sub: str) -> None:
        d = self._cert_dir(sub)
        for p in (d / "fullchain.pem", d / "privkey.pem"):
            p.unlink(missing_ok=True)
        (self.root / "status" / f"{sub}.json").unlink(missing_ok=True)  # kept by earlier versions
        (self.root / "renew" / sub).unlink(missing_ok=True)

    def subscriptions(self) -> list[str]:
        d = self.root / "certs"
        return sorted(p.name for p in d.iterdir() if (p / "fullchain.pem").exists()) if d.is_dir() else []

    # --- renewal state ----------------------------------------------------------------

    def force(self, sub: str) -> Path:
        """Ask for a renewal at the next resync (``tenantctl tls renew``)."""
        self._cert_dir(sub)
        path = self.root / "renew" / sub
        write_private(path, dt.datetime.now(dt.UTC).isoformat().encode())
        return path

    def forced(self, sub: str) -> bool:
        self._cert_dir(sub)
        return (self.root / "renew" / sub).exists()

    def unforce(self, sub: str) -> None:
        (self.root / "renew" / sub).unlink(missing_ok=True)
