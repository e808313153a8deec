"""``python -m controller.operator``: the same replica as ``tenantctl operator`` (same
flags), for images that run the package rather than the ``tenantctl`` script."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from controller import settings
from controller.operator import main, options


def parse(argv: Sequence[str]) -> options.Options:
    p = argparse.ArgumentParser(prog="python -m controller.operator", description=__doc__)
    p.add_argument("--namespace", "-n", default="tenantctl")
    p.add_argument("--lease", default="tenantctl-operator")
    p.add_argument("--metrics-addr", default=None)
    p.add_argument("--health-addr", default=None)
    p.add_argument("--identity", default=None)
    p.add_argument("--server", default=None)
    p.add_argument("--resync", type=float, default=300.0)
    a = p.parse_args(list(argv))
    return options.Options(namespace=a.namespace, lease=a.lease, identity=a.identity or options.default_identity(),
                           metrics_addr=a.metrics_addr, health_addr=a.health_addr, server=a.server,
                           resync=a.resync)


def run(argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s",
                        stream=sys.stderr)
    return asyncio.run(main.run(parse(argv), state_dir=settings.current().core.state_dir.resolve(),
                                exit_on_loss=True))


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
