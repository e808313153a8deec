"""The README's desired-state example is valid (with the bundled regions, servers and
customers it refers to), so the manual cannot drift from the format."""

from __future__ import annotations

import re
from pathlib import Path

from controller import model

ROOT = Path(__file__).resolve().parent.parent


def test_readme_example_validates(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "kind: ServicePlan" in b]
    assert blocks, "the README has no desired-state example"
    renamed = (blocks[0].replace("{name: business}", "{name: readme-business}")
               .replace("plan: business", "plan: readme-business")
               .replace("{name: php-boost}", "{name: readme-boost}").replace("[php-boost]", "[readme-boost]")
               .replace("mermoz.example.org", "readme.example.org"))
    (tmp_path / "readme.yaml").write_text(renamed)
    ds = model.load_desired([tmp_path / "readme.yaml", ROOT / "examples" / "regions-servers.yaml",
                             ROOT / "examples" / "customers.yaml"])
    assert ds.subscriptions["readme.example.org"].addons == ["readme-boost"]
