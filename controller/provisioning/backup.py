"""Secrets and fixed names of the backup repositories (issue 9; BKP-1..3).

What belongs here: the environment's backup CA and each repository server's TLS
certificate (EC P-256, signed by that CA, IP SAN = the server's address), each source
server's repository login and restic repository password, the bcrypt line of a login in
the repository server's htpasswd, and the fixed paths, port and Unix user that the
``tenantctl_server`` role sets up on every server with role ``backup`` (``rclone serve
restic`` as ``USER`` on ``<address>:PORT``, ``--append-only --private-repos``). Each
secret is made on first use and kept 0600 under ``<state>/secrets/backup/``; nothing
here touches a server.

What does not: which server is a region's repository server and who copies where
(``drivers.backup``), running restic (the backup agent).

State dir layout: ``secrets/backup/ca.key`` + ``ca.crt`` (the CA), ``<server>.key`` +
``<server>.crt`` (a repository server's certificate), ``<server>.json`` (a source
server's ``login_password`` and ``repo_password``), all 0600 in a 0700 directory.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import secrets
import string
from pathlib import Path

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from controller.provisioning import keys

#: port of ``rclone serve restic`` on a repository server's own address
PORT = 8000
#: where the repositories live on a repository server (one directory per login)
REPO_ROOT = "/var/lib/tenantctl-backup/repos"
#: the Unix user (and group) that runs the repository server and owns its data
USER = "tenantctl-backup"
#: the logins of the repository server (re-read live by rclone)
HTPASSWD = "/etc/tenantctl-backup/htpasswd"
#: the backup CA on every server (restic clients pass it with ``--cacert``)
CA_ON_SERVERS = "/etc/tenantctl/backup-ca.pem"
#: the name of a source server's one repository in each region (``/<server>/main/``)
REPO_NAME = "main"

_PASSWORD = re.compile(r"^[A-Za-z0-9]{16,}$")
_ALPHABET = string.ascii_letters + string.digits
_CA_DAYS = 3650
_CERT_DAYS = 825
#: a server certificate this close to its end is made again (at the next bootstrap)
_RENEW_BEFORE = datetime.timedelta(days=30)
#: bcrypt cost of htpasswd lines: rclone checks the hash on every request, and the
#: passwords are 32 random characters (190 bits), which no cost factor makes stronger
_BCRYPT_ROUNDS = 5
_SECRETS = ("login_password", "repo_password")



def _checked_address(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(address)  # raises ValueError on anything else


def _secrets_dir(state_dir: Path) -> Path:
    keys.private_dir(state_dir / "secrets")
    return keys.private_dir(state_dir / "secrets" / "backup")



def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def ca(state_dir: Path) -> Path:
    """The environment's backup CA certificate (made once with its key, both 0600)."""
    folder = _secrets_dir(state_dir)
    crt, key_path = folder / "ca.crt", folder / "ca.key"
    with keys.made_once(folder):
        _make_ca(crt, key_path)
    for path in (crt, key_path):
        path.chmod(0o600)
    return crt


def _make_ca(crt: Path, key_path: Path) -> None:
    if not (crt.exists() and key_path.exists()):
        key = _new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tenantctl backup CA")])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        keys.write_private(key_path, _key_pem(key))
        keys.write_private(crt, cert.public_bytes(serialization.Encoding.PEM))


def ca_pem(state_dir: Path) -> str:
    """The backup CA certificate in PEM (what every server gets as ``CA_ON_SERVERS``)."""
    return ca(state_dir).read_text()


def _current(cert_path: Path, ca_cert: x509.Certificate, server: str,
             address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """The kept certificate still fits: same CA, same names, not close to its end."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return (cert.issuer == ca_cert.subject
            and sans.get_values_for_type(x509.IPAddress) == [address]
            and sans.get_values_for_type(x509.DNSName) == [server]
            and cert.not_valid_after_utc - _now() > _RENEW_BEFORE)


def issue(state_dir: Path, name: str, sans: list[x509.GeneralName],
          usages: list[x509.ObjectIdentifier]) -> tuple[bytes, bytes]:
    """A new key and its certificate for ``name`` (common name), signed by the backup CA
    for ``_CERT_DAYS``: ``(key PEM, certificate PEM)``. The CA's key never leaves here."""
    ca_crt = ca(state_dir)
    ca_cert = x509.load_pem_x509_certificate(ca_crt.read_bytes())
    ca_key = serialization.load_pem_private_key((ca_crt.parent / "ca.key").read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca_crt.parent / 'ca.key'} is not an EC key")
    key = _new_key()
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return _key_pem(key), cert.public_bytes(serialization.Encoding.PEM)


def server_cert(state_dir: Path, server: str, address: str) -> tuple[str, str]:
    """``(certificate PEM, key PEM)`` of repository server ``server`` on ``address``:
    IP SAN = the address, DNS SAN = the name, signed by ``ca``; made once and kept 0600,
    made again when the address changed (or the CA, or the end is near)."""
    keys.server_name(server)
    ip = _checked_address(address)
    ca_crt = ca(state_dir)
    folder = ca_crt.parent
    ca_cert = x509.load_pem_x509_certificate(ca_crt.read_bytes())
    crt, key_path = folder / f"{server}.crt", folder / f"{server}.key"
    with keys.made_once(folder):
        if not (crt.exists() and key_path.exists() and _current(crt, ca_cert, server, ip)):
            key_pem, cert_pem = issue(state_dir, server, [x509.DNSName(server), x509.IPAddress(ip)],
                                      [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH])
            keys.write_private(key_path, key_pem)
            keys.write_private(crt, cert_pem)
        for path in (crt, key_path):
            path.chmod(0o600)
        return crt.read_text(), key_path.read_text()


def _server_secrets(state_dir: Path, server: str) -> dict[str, str]:
    """A source server's login and repository passwords (made once, 0600 JSON)."""
    keys.server_name(server)
    path = _secrets_dir(state_dir) / f"{server}.json"
    with keys.made_once(path.parent):
        found: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        if any(k not in found for k in _SECRETS):
            for k in _SECRETS:
                found.setdefault(k, "".join(secrets.choice(_ALPHABET) for _ in range(32)))
            keys.write_private(path, (json.dumps(found, indent=2, sort_keys=True) + "\n").encode())
        path.chmod(0o600)
    return found


def login_password(state_dir: Path, server: str) -> str:
    """The password of source server ``server``'s login on every repository server."""
    return _server_secrets(state_dir, server)["login_password"]


def repo_password(state_dir: Path, server: str) -> str:
    """The restic password of ``server``'s repositories (the same in every region)."""
    return _server_secrets(state_dir, server)["repo_password"]


def htpasswd_hash(password: str) -> str:
    """A bcrypt hash of ``password`` as rclone 1.60's htpasswd reader accepts it
    (``$2y$``, Apache's prefix; the same algorithm as Python's ``$2b$``)."""
    if not _PASSWORD.match(password):
        raise ValueError("a login password is 16+ characters of [A-Za-z0-9]")
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=_BCRYPT_ROUNDS)).decode()
    return "$2y$" + hashed.removeprefix("$2b$")


def htpasswd_line(server: str, password: str) -> str:
    """``<server>:<hash>``: the htpasswd line of ``server``'s login (no newline)."""
    return f"{keys.server_name(server)}:{htpasswd_hash(password)}"


def repo_url(server: str, password: str, address: str) -> str:
    """``rest:https://<server>:<password>@<address>:PORT/<server>/main/``: source server
    ``server``'s repository on the repository server at ``address`` (keep it out of
    argv: it holds the password; restic reads it from ``--repository-file``)."""
    keys.server_name(server)
    if not _PASSWORD.match(password):
        raise ValueError("a login password is 16+ characters of [A-Za-z0-9]")
    ip = _checked_address(address)
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    return f"rest:https://{server}:{password}@{host}:{PORT}/{server}/{REPO_NAME}/"


def owner_path(server: str) -> str:
    """The path of source server ``server``'s repository on a repository server's disk
    (where owner-side forget/prune/check run, as ``USER``)."""
    return f"{REPO_ROOT}/{keys.server_name(server)}/{REPO_NAME}"
