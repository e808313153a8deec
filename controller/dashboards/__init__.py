"""tenantctl's Grafana dashboards as code (issue 12), built with grafana-foundation-sdk.

``panels`` holds the vocabulary (boards, rows, panels, queries) and turns a board into
Grafana's JSON; one module per dashboard defines its ``BOARD`` (``overview``, ``servers``,
``tls``, ``dns``, ``backups``); ``boards`` lists them by file name and writes them.
Pure: no I/O but ``boards.write``; ``tenantctl dashboards`` (controller/cli/dashboards.py)
regenerates ``monitoring/grafana/``.
"""

from pathlib import Path

#: where the generated dashboards are checked in (importing this package costs nothing:
#: the generator, grafana-foundation-sdk, is imported by ``boards`` only)
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "monitoring" / "grafana"
