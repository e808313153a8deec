"""Every dashboard by the file it is written to, and the writing (``tenantctl dashboards``)."""

from __future__ import annotations

from pathlib import Path

from controller import dashboards
from controller.dashboards import backups, dns, overview, panels, servers, tls

BOARDS: dict[str, panels.Board] = {
    "tenantctl-overview.json": overview.BOARD,
    "tenantctl-server.json": servers.BOARD,
    "tenantctl-tls.json": tls.BOARD,
    "tenantctl-dns.json": dns.BOARD,
    "tenantctl-backups.json": backups.BOARD,
}
DEFAULT_DIR = dashboards.DEFAULT_DIR


def rendered() -> dict[str, str]:
    """``{file name: JSON text}`` of every dashboard."""
    return {name: panels.render(board) for name, board in BOARDS.items()}


def differing(out: Path) -> list[str]:
    """File names in ``out`` whose content is not what the boards generate (or missing)."""
    return [name for name, text in rendered().items()
            if not (out / name).is_file() or (out / name).read_text(encoding="utf-8") != text]


def write(out: Path) -> list[Path]:
    """Write every dashboard into ``out`` (created); returns the files whose content changed."""
    out.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in rendered().items():
        path = out / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed
