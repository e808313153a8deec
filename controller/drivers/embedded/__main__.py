"""``python -m controller.drivers.embedded up|down|status -f FILE.yaml``: a test harness.

Reads ``Server`` documents with plain PyYAML (other kinds are ignored) and calls
``env_up``/``env_down``/``env_status`` for the environment of ``--state-dir`` only. The
product's CLI is ``tenantctl env``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

from controller.drivers import embedded
from controller.drivers.embedded import errors


def load_servers(paths: list[Path]) -> list[embedded.ServerSpec]:
    """Every ``Server`` document in ``paths``."""
    found = []
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Server":
                found.append(embedded.ServerSpec.from_dict(doc))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controller.drivers.embedded")
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("-f", "--file", dest="files", type=Path, action="append", default=[])
    parser.add_argument("--destroy-data", action="store_true", help="down: remove the servers with their data")
    parser.add_argument("--state-dir", type=Path,
                        default=Path(os.environ.get("TENANTCTL_STATE_DIR", ".state")))
    args = parser.parse_args(argv)
    state_dir: Path = args.state_dir.resolve()
    try:
        specs = load_servers(args.files)
        if args.command == "up":
            embedded.env_up(specs, state_dir)
        elif args.command == "down":
            print("\n".join(embedded.env_down(state_dir, destroy_data=args.destroy_data).describe()))
        else:
            print(json.dumps(embedded.env_status(specs, state_dir), indent=2))
    except (errors.EmbeddedError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
