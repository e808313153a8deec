"""TLS identities of pgBackRest's TLS servers (PostgreSQL PITR, issue 10, BKP-4).

What belongs here: each server's pgBackRest certificate and key, signed by the
environment's backup CA (``provisioning.backup``): EC P-256, CN = DNS SAN = the
server's name (pgBackRest 2.45 ignores IP SANs and checks the peer's *name*; the
controller writes ``/etc/hosts`` entries so names resolve), extended key usage server
and client (each host serves its own ``pgbackrest server`` and connects to its peers'
with the same certificate; ``tls-server-auth`` maps the client CN to its stanzas). Made
once and kept 0600 under ``<state>/secrets/pitr/``; made again when the CA changed, the
name does not fit or the end is near. Nothing here touches a server.

What does not: which hosts talk to which (``drivers.backup.pgpitr``), the pgBackRest
configuration (``drivers.pgpitr.conf``).
"""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controller.provisioning import backup, keys

_RENEW_BEFORE = datetime.timedelta(days=30)



def _folder(state_dir: Path) -> Path:
    keys.private_dir(state_dir / "secrets")
    return keys.private_dir(state_dir / "secrets" / "pitr")



def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _current(cert: x509.Certificate, ca_cert: x509.Certificate, server: str) -> bool:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return (cert.issuer == ca_cert.subject and cns == [server]
            and sans.get_values_for_type(x509.DNSName) == [server]
            and cert.not_valid_after_utc - _now() > _RENEW_BEFORE)


def identity(state_dir: Path, server: str) -> tuple[str, str]:
    """``(certificate PEM, key PEM)`` of ``server``'s pgBackRest TLS identity."""
    keys.server_name(server)
    ca_crt = backup.ca(state_dir)
    ca_cert = x509.load_pem_x509_certificate(ca_crt.read_bytes())
    folder = _folder(state_dir)
    crt, key_path = folder / f"{server}.crt", folder / f"{server}.key"
    with keys.made_once(folder):
        if not (crt.exists() and key_path.exists()
                and _current(x509.load_pem_x509_certificate(crt.read_bytes()), ca_cert, server)):
            key_pem, cert_pem = backup.issue(state_dir, server, [x509.DNSName(server)],
                                             [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
            keys.write_private(key_path, key_pem)
            keys.write_private(crt, cert_pem)
        for path in (crt, key_path):
            path.chmod(0o600)
        return crt.read_text(), key_path.read_text()
