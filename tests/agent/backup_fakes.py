"""Fakes for the backup agent's tests: database tools that inject failures (named as
fakes), a known dump, and a real ``rclone serve restic`` over TLS on loopback.

``fake_tools(bin_dir, state_dir)`` writes a fake ``mariadb-dump`` and a fake ``mariadb``
(put ``bin_dir`` first on PATH, ``FAKE_DB_DIR=state_dir``). The fake dump answers by
database name: ``shop``: ``DUMP`` (with its completion marker); ``broken``: half a dump
then exit 2; ``killed``: half a dump then SIGKILL itself; ``cut``: half a dump, exit 0,
no marker; a database the fake ``mariadb`` loaded: what it loaded. The fake ``mariadb``
stores what it reads for a database, logs ``-e`` statements and forgets a database on
``DROP DATABASE``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt

HEAD = b"""-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)
--
-- Host: localhost    Database: shop
/*M!999999\\- enable the sandbox mode */
DROP TABLE IF EXISTS `orders`;
CREATE TABLE `orders` (
  `id` int(11) NOT NULL,
  `item` varchar(20) NOT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
LOCK TABLES `orders` WRITE;
"""
ROWS = [b"INSERT INTO `orders` VALUES (1,'apple');", b"INSERT INTO `orders` VALUES (2,'pear');",
        b"INSERT INTO `orders` VALUES (3,'fig');"]
TAIL = b"""UNLOCK TABLES;
DROP TABLE IF EXISTS `empty`;
CREATE TABLE `empty` (
  `id` int(11) NOT NULL
) ENGINE=InnoDB;
-- Dump completed on 2026-11-30 12:00:00
"""
DUMP = HEAD + b"\n".join(ROWS) + b"\n" + TAIL

_FAKE_DUMP = """#!{python}
# FAKE mariadb-dump (tests): failures chosen by the database name
import os, sys
db = sys.argv[-1]
loaded = os.path.join(os.environ["FAKE_DB_DIR"], db + ".sql")
out = sys.stdout.buffer
if os.path.exists(loaded):
    out.write(open(loaded, "rb").read())
    sys.exit(0)
half = {head!r} + b"".join(b"INSERT INTO `orders` VALUES (%d,'x');\\n" % i for i in range(20000))
if db == "shop":
    out.write({dump!r})
elif db == "broken":
    out.write(half); out.flush()
    sys.stderr.write("mariadb-dump: Got error: 1049: Unknown database\\n")
    sys.exit(2)
elif db == "killed":
    out.write(half); out.flush()
    os.kill(os.getpid(), 9)
elif db == "cut":
    out.write(half)
else:
    sys.exit("fake mariadb-dump: unknown database " + db)
"""

_FAKE_CLIENT = """#!{python}
# FAKE mariadb client (tests): stores what it loads, logs statements
import os, re, sys
state = os.environ["FAKE_DB_DIR"]
args = sys.argv[1:]
if args[:1] == ["-e"]:
    with open(os.path.join(state, "statements"), "a") as fh:
        fh.write(args[1] + "\\n")
    m = re.match(r"DROP DATABASE IF EXISTS `(.*)`", args[1])
    if m and os.path.exists(os.path.join(state, m.group(1) + ".sql")):
        os.unlink(os.path.join(state, m.group(1) + ".sql"))
    sys.exit(0)
data = sys.stdin.buffer.read()
# like a database, keep the data, not the session's own statements (autocommit, COMMIT)
data = re.sub(rb"\\ASET autocommit=0;[^\\n]*\\n", b"", data)
data = re.sub(rb"\\nCOMMIT;\\n\\Z", b"", data)
with open(os.path.join(state, args[-1] + ".sql"), "wb") as fh:
    fh.write(data)
"""


def fake_tools(bin_dir: Path, state_dir: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("mariadb-dump", _FAKE_DUMP.format(python=sys.executable, head=HEAD, dump=DUMP)),
                       ("mariadb", _FAKE_CLIENT.format(python=sys.executable))):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_certs(d: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1 (IP SAN); returns the CA file."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for argv in (["openssl", "req", "-x509", *ec, "-days", "2", "-subj", "/CN=test-backup-CA",
                  "-keyout", "ca.key", "-out", "ca.crt"],
                 ["openssl", "req", *ec, "-subj", "/CN=test-repo", "-keyout", "srv.key", "-out", "srv.csr"],
                 ["openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                  "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "srv.crt"]):
        subprocess.run(argv, cwd=d, check=True, capture_output=True)
    return d / "ca.crt"


@contextlib.contextmanager
def rclone_server(root: Path, users: dict[str, str], certs: Path) -> Iterator[int]:
    """``rclone serve restic --append-only --private-repos`` over TLS on 127.0.0.1: its port."""
    root.mkdir(parents=True, exist_ok=True)
    htpasswd = root.parent / "htpasswd"
    htpasswd.write_text("".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
                                for u, p in users.items()))
    port = free_port()
    proc = subprocess.Popen(["rclone", "serve", "restic", str(root), "--addr", f"127.0.0.1:{port}", "--append-only",
                             "--private-repos", "--htpasswd", str(htpasswd), "--cert", str(certs / "srv.crt"),
                             "--key", str(certs / "srv.key"), "--config", os.devnull],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("rclone serve restic did not start")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
