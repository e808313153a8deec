"""The zipapp shipped to servers: deterministic (digest = identity), complete (runs with
an isolated interpreter that has nothing but the standard library), and the entry
points on it import nothing but the standard library and the agent library."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import zipfile
from io import BytesIO
from pathlib import Path

from controller.agent import bundle, jobs, main


def test_the_same_sources_give_the_same_bytes_and_digest() -> None:
    a, b = bundle.build(), bundle.build()
    assert a == b and a.remote_path == f"/var/lib/tenantctl/agent/{a.digest}.pyz"
    names = zipfile.ZipFile(BytesIO(a.data)).namelist()
    assert "__main__.py" in names and "controller/agent/bundle.py" not in names
    assert {f"controller/drivers/{e}/agent.py" for e in main.ENTRIES} <= set(names)
    assert "controller/drivers/drdrill/__init__.py" in names


def test_the_zipapp_runs_with_the_servers_bare_python(tmp_path: Path) -> None:
    pyz = tmp_path / "agent.pyz"
    pyz.write_bytes(bundle.current().data)
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "job.json").write_text(json.dumps(jobs.encode(jobs.Job(jobs.VERSION, "check", expect=[
        jobs.Expect("a", {str(tmp_path / "nothing"): "0" * 64})]))))
    # /usr/bin/python3 without site-packages (-I -S): what a freshly bootstrapped server has
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    for entry in ("hosting", "tls"):
        proc = subprocess.run([python, "-I", "-S", str(pyz), entry, str(stage)], capture_output=True, text=True,
                              check=False, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert jobs.decode(jobs.Outcome, json.loads(proc.stdout)).drift == {"a": f"{tmp_path / 'nothing'} missing"}


def test_every_entry_imports_from_the_zipapp_with_the_servers_bare_python(tmp_path: Path) -> None:
    pyz = tmp_path / "agent.pyz"
    pyz.write_bytes(bundle.current().data)
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    code = "import sys\nsys.path.insert(0, sys.argv[1])\nfrom controller.agent import main\n" \
           "for e in main.ENTRIES:\n    assert callable(main.handler(e)), e\nprint(len(main.ENTRIES))\n"
    proc = subprocess.run([python, "-I", "-S", "-c", code, str(pyz)], capture_output=True, text=True, check=False,
                          cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == str(len(main.ENTRIES)), proc.stderr


def test_shipped_modules_import_only_the_standard_library_the_agent_and_packed_entries() -> None:
    """An entry may share another entry's module (``drdrill`` uses the backup entry's
    restore helpers): every entry module is in the zipapp."""
    allowed = set(sys.stdlib_module_names) | {"controller"}
    packed = {f"controller.drivers.{e}.agent" for e in main.ENTRIES}
    for path in bundle.sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                pairs = [(a.name, a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                pairs = [(node.module or "", f"{node.module}.{a.name}") for a in node.names]
            else:
                continue
            for mod, full in pairs:
                assert mod.split(".")[0] in allowed or mod == "__future__", f"{path}: imports {mod}"
                if mod.startswith("controller"):
                    assert full.startswith("controller.agent.") or full in packed, f"{path}: imports {full}"
