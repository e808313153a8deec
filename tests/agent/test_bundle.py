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

from controller.agent import bundle, jobs


def test_the_same_sources_give_the_same_bytes_and_digest() -> None:
    a, b = bundle.build(), bundle.build()
    assert a == b and a.remote_path == f"/var/lib/tenantctl/agent/{a.digest}.pyz"
    names = zipfile.ZipFile(BytesIO(a.data)).namelist()
    assert "__main__.py" in names and "controller/agent/bundle.py" not in names
    assert {"controller/drivers/hosting/agent.py", "controller/drivers/tls/agent.py"} <= set(names)


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


def test_shipped_modules_import_only_the_standard_library_and_the_agent() -> None:
    allowed = set(sys.stdlib_module_names) | {"controller"}
    for path in bundle.sources():
        for node in ast.walk(ast.parse(path.read_text())):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for mod in mods:
                assert mod.split(".")[0] in allowed or mod == "__future__", f"{path}: imports {mod}"
                if mod.startswith("controller"):
                    assert mod == "controller.agent" or mod.startswith("controller.agent."), f"{path}: imports {mod}"
