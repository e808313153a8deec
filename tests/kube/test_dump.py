"""Cluster dumps -> documents: the objects of ``kubectl get ... -o yaml`` load like the
files they were applied from (same result, same errors), through ``controller.kube.dump``."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from controller import errors, model
from controller.cli import crds as _crds_cli  # noqa: F401  (registers `documents`)
from controller.cli.main import app
from controller.kube import dump, resource

from .support import EXAMPLES, example_documents


def as_cluster_object(doc: dict[str, Any], n: int) -> dict[str, Any]:
    """What the API server returns for a document applied with ``kubectl apply``."""
    cr = resource.to_resource(doc, namespace="tenantctl")
    cr["metadata"].update({
        "uid": f"0000-{n}", "resourceVersion": str(1000 + n), "generation": 2,
        "creationTimestamp": "2026-11-30T10:00:00Z", "finalizers": ["tenantctl.io/final-backup"],
        "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update"}],
        "annotations": {**cr["metadata"].get("annotations", {}),
                        "kubectl.kubernetes.io/last-applied-configuration": "{}"},
    })
    cr["status"] = {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]}
    return cr


def kubectl_list(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
            "items": [as_cluster_object(d, i) for i, d in enumerate(docs)]}


def write_dump(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump(kubectl_list(docs), sort_keys=False))
    return path


def issues(paths: list[Path]) -> set[tuple[str, str]]:
    """(field path, message) of every issue: the same errors, wherever the lines are."""
    try:
        model.load_desired(paths)
    except errors.InputError as exc:
        return {(i.path, i.message) for i in exc.issues}
    return set()


def broken_examples() -> list[dict[str, Any]]:
    docs = copy.deepcopy([d for _, d in example_documents()])
    for d in docs:
        if d["kind"] == "Subscription" and d["spec"].get("plan"):
            d["spec"]["addons"] = ["no-such-addon"]
            d["spec"]["databases"] = [{"name": "app", "engine": "mariadb"}, {"name": "app", "engine": "mariadb"}]
            break
    for d in docs:
        if d["kind"] == "Server":
            d["spec"]["region"] = "mars"
            break
    return docs


def test_a_dump_is_cleaned_to_documents() -> None:
    docs = [d for _, d in example_documents()]
    out = dump.to_documents([kubectl_list(docs)])
    assert len(out) == len(docs)
    for d in out:
        assert set(d) == {"apiVersion", "kind", "metadata", "spec"}
        assert set(d["metadata"]) <= {"name", "labels", "annotations"}
    assert dump.to_documents([{"kind": "SubscriptionList", "items": [], "apiVersion": "tenantctl.io/v1"}]) == []
    single = as_cluster_object(docs[0], 0)
    assert dump.to_documents([single, None]) == [dump.clean(single)]


def test_user_annotations_and_unknown_fields_survive() -> None:
    obj = {"apiVersion": "tenantctl.io/v1", "kind": "Customer", "extra": 1,
           "metadata": {"name": "acme", "uid": "u", "annotations": {"team": "ops",
                                                                      "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
           "spec": {"email": "a@b.example"}, "status": {}}
    assert dump.clean(obj) == {"apiVersion": "tenantctl.io/v1", "kind": "Customer", "extra": 1,
                               "metadata": {"name": "acme", "annotations": {"team": "ops"}},
                               "spec": {"email": "a@b.example"}}


@pytest.mark.parametrize("docs", [
    pytest.param(lambda: [d for _, d in example_documents()], id="examples"),
    pytest.param(broken_examples, id="broken-examples"),
])
def test_converted_dump_loads_like_the_files(docs: Any, tmp_path: Path) -> None:
    originals = docs()
    files = tmp_path / "files.yaml"
    files.write_text(yaml.safe_dump_all(originals, sort_keys=False))
    converted = tmp_path / "converted.yaml"
    converted.write_text(dump.render(dump.read(write_dump(tmp_path / "dump.yaml", originals).read_text())))
    assert issues([converted]) == issues([files])
    if not issues([files]):
        a, b = model.load_desired([files]), model.load_desired([converted])
        for kind in ("Region", "Server", "ServicePlan", "AddOnPlan", "Customer", "Subscription"):
            assert a.table(kind) == b.table(kind)
    else:
        assert len(issues([files])) >= 3


def test_tenantctl_validate_gives_the_same_result(cli: Any, tmp_path: Path) -> None:
    converted = tmp_path / "converted.yaml"
    docs = [d for _, d in example_documents()]
    converted.write_text(dump.render(dump.read(write_dump(tmp_path / "dump.yaml", docs).read_text())))
    a, b = cli("validate", "-f", str(EXAMPLES)), cli("validate", "-f", str(converted))
    assert (a.code, a.stdout) == (b.code, b.stdout) == (0, a.stdout)
    assert "14 Subscription" in a.stdout


def test_tenantctl_validate_gives_the_same_errors(cli: Any, tmp_path: Path) -> None:
    docs = broken_examples()
    files = tmp_path / "files.yaml"
    files.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    converted = tmp_path / "converted.yaml"
    converted.write_text(dump.render(dump.read(write_dump(tmp_path / "dump.yaml", docs).read_text())))
    a, b = cli("validate", "-f", str(files)), cli("validate", "-f", str(converted))
    assert a.code == b.code == 2

    def messages(err: str) -> list[str]:
        return sorted(line.split(": ", 1)[1] for line in err.splitlines() if line.startswith(str(tmp_path)))

    assert messages(a.stderr) == messages(b.stderr) and len(messages(a.stderr)) >= 3


def test_tenantctl_validate_reads_a_dump_directly(cli: Any, tmp_path: Path) -> None:
    dumped = write_dump(tmp_path / "dump.yaml", [d for _, d in example_documents()])
    a, b = cli("validate", "-f", str(EXAMPLES)), cli("validate", "-f", str(dumped))
    assert (b.code, b.stdout) == (a.code, a.stdout)


def test_tenantctl_documents_turns_a_dump_into_valid_documents(cli: Any, tmp_path: Path) -> None:
    dumped = write_dump(tmp_path / "dump.yaml", [d for _, d in example_documents()])
    r = CliRunner().invoke(app, ["documents", str(dumped)])
    assert r.exit_code == 0, r.output
    (tmp_path / "state.yaml").write_text(r.stdout)
    a, b = cli("validate", "-f", str(EXAMPLES)), cli("validate", "-f", str(tmp_path / "state.yaml"))
    assert (b.code, b.stdout) == (a.code, a.stdout) == (0, a.stdout)
    bad = CliRunner().invoke(app, ["documents", str(tmp_path / "missing.yaml")])
    assert bad.exit_code == 2 and "cannot read the dump" in bad.stderr
