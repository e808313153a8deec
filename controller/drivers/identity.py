"""Which machine answers at a server's address: its identity marker (issue 7 point 3).

Bootstrap (the Ansible role) writes ``/etc/tenantctl/generation``: a random id made once
and never rewritten. A server replaced by a fresh machine, or wiped, answers with another
id or none, so the engine knows that what it applied there is gone, without asking every
concern. One SSH round trip per server, all servers at once.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterable
from dataclasses import dataclass, field

from controller import errors
from controller.drivers import naming, transport
from controller.drivers.context import Context

MARKER = "/etc/tenantctl/generation"
#: where the web driver puts one vhost per tenant
VHOSTS = naming.NGINX_DIR
#: what ``generations`` reports for a server that answers but has no marker
MISSING = ""


@dataclass(frozen=True)
class Probed:
    """``generations``: server -> marker (``MISSING`` if absent); ``unreachable``:
    server -> why it could not be asked."""

    generations: dict[str, str] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)
    #: server -> tenant vhosts found there (``status`` warns when the store is empty)
    tenants: dict[str, int] = field(default_factory=dict)


class Probe:
    """Reads the identity markers of servers over SSH."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._pool = transport.Pool(ctx)

    def _one(self, server: str) -> tuple[str, int]:
        script = (f"cat {MARKER} 2>/dev/null || true; echo; "
                  f"ls {VHOSTS} 2>/dev/null | wc -l")
        done = self._pool.get(server).run(["sh", "-c", script], timeout=20.0)
        lines = done.text.splitlines()
        gen = lines[0].strip() if lines else MISSING
        count = int(lines[-1]) if len(lines) > 1 and lines[-1].strip().isdigit() else 0
        return gen, count

    def probe(self, servers: Iterable[str]) -> Probed:
        names = sorted({s for s in servers if s in self.ctx.servers})
        out = Probed()
        if not names:
            return out
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
            futures = {s: pool.submit(self._one, s) for s in names}
            for server, fut in futures.items():
                try:
                    out.generations[server], out.tenants[server] = fut.result()
                except errors.DriverError as exc:  # the transport names the server and its address
                    out.unreachable[server] = str(exc)
        return out

    def close(self) -> None:
        self._pool.close()
