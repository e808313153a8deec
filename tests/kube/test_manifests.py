"""deploy/: every manifest validates offline with kubernetes-validate (schemas of
Kubernetes 1.28 and the latest it ships), and the pieces fit together (selectors, ports,
the service account, least-privilege RBAC, a restricted pod). The ServiceMonitor is a
prometheus-operator kind whose schema kubernetes-validate does not ship: its structure
is checked here instead."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import kubernetes_validate
import pytest
import yaml

from controller.kube import crds

from .support import ROOT

DEPLOY = ROOT / "deploy"


def manifests() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out += [(str(path.relative_to(DEPLOY)), d) for d in yaml.safe_load_all(path.read_text()) if d]
    return out


MANIFESTS = manifests()
BY_KIND: dict[str, dict[str, Any]] = {d["kind"]: d for _, d in MANIFESTS}
NATIVE = [(f, d) for f, d in MANIFESTS if d["apiVersion"] != "monitoring.coreos.com/v1"]


@pytest.mark.parametrize("version", ["1.28.0", kubernetes_validate.latest_version()])
@pytest.mark.parametrize(("file", "doc"), [pytest.param(f, d, id=f"{f}:{d['kind']}") for f, d in NATIVE])
def test_kubernetes_validate(file: str, doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_kubernetes_validate_refuses_a_broken_manifest() -> None:
    bad = yaml.safe_load((DEPLOY / "operator" / "deployment.yaml").read_text())
    bad["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.28.0", strict=True)


def test_everything_is_in_the_kustomization_and_the_namespace() -> None:
    listed = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"]
    files = sorted(str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == files
    assert listed[0] == "operator/namespace.yaml"
    assert {f"crds/{n}" for n in crds.definitions()} <= set(listed)
    for _, d in MANIFESTS:
        if d["kind"] not in ("Namespace", "CustomResourceDefinition"):
            assert d["metadata"]["namespace"] == "tenantctl", d["kind"]


def test_kubectl_kustomize_renders_deploy() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (offline `kubectl kustomize` is the real client check)")
    out = subprocess.run([kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60, check=True)
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(out.stdout))
    assert kinds == sorted(d["kind"] for _, d in MANIFESTS)


def _pod_labels() -> dict[str, str]:
    labels: dict[str, str] = BY_KIND["Deployment"]["spec"]["template"]["metadata"]["labels"]
    return labels


def test_selectors_and_ports_fit() -> None:
    dep, svc, pdb, mon = BY_KIND["Deployment"], BY_KIND["Service"], BY_KIND["PodDisruptionBudget"], BY_KIND[
        "ServiceMonitor"]
    labels = _pod_labels()
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] == 1 and dep["spec"]["replicas"] == 2
    container = dep["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    claim = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v)
    assert claim["persistentVolumeClaim"]["claimName"] == BY_KIND["PersistentVolumeClaim"]["metadata"]["name"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == claim["name"])
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TENANTCTL_STATE_DIR"] == mount["mountPath"]
    assert mon["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert {e["port"] for e in mon["spec"]["endpoints"]} <= {p["name"] for p in svc["spec"]["ports"]}


def test_service_monitor_structure() -> None:
    """No prometheus-operator schema ships with kubernetes-validate: the fields
    prometheus-operator requires, with their types, checked by hand."""
    mon = BY_KIND["ServiceMonitor"]
    assert mon["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(mon) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(mon["spec"]) <= {"selector", "namespaceSelector", "endpoints", "jobLabel", "targetLabels"}
    assert isinstance(mon["spec"]["selector"]["matchLabels"], dict)
    assert mon["spec"]["namespaceSelector"] == {"matchNames": ["tenantctl"]}
    for ep in mon["spec"]["endpoints"]:
        assert set(ep) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
        assert ep["path"] == "/metrics"
        for d in ("interval", "scrapeTimeout"):
            assert ep[d][:-1].isdigit() and ep[d][-1] in "sm"


def test_pod_is_restricted() -> None:
    pod = BY_KIND["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == BY_KIND["ServiceAccount"]["metadata"]["name"]
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert set(c["resources"]) == {"requests", "limits"}
    assert BY_KIND["Namespace"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_rbac_is_least_privilege() -> None:
    role, binding = BY_KIND["Role"], BY_KIND["RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": BY_KIND["ServiceAccount"]["metadata"]["name"],
                                    "namespace": "tenantctl"}]
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    plurals = {k.plural for k in crds.KINDS}
    assert {r for g, r, _ in granted if g == "tenantctl.io"} == plurals | {f"{p}/status" for p in plurals}
    assert {g for g, _, _ in granted} == {"tenantctl.io", "coordination.k8s.io", "", "events.k8s.io"}
    assert not {v for _, _, v in granted} & {"delete", "deletecollection", "escalate", "bind", "impersonate", "*"}
    assert not {r for _, r, _ in granted} & {"secrets", "*", "pods", "configmaps"}
    named = [rule for rule in role["rules"] if rule.get("resourceNames")]
    assert named == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                      "resourceNames": ["tenantctl-operator"], "verbs": ["get", "update", "patch"]}]
    lease_arg = next(a for a in BY_KIND["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
                     if a.startswith("--lease="))
    assert lease_arg == "--lease=tenantctl-operator"


def test_every_crd_file_is_the_generated_one() -> None:
    for name, crd in crds.definitions().items():
        assert yaml.safe_load((DEPLOY / "crds" / name).read_text()) == crd


def test_deploy_has_no_hand_written_crd() -> None:
    found = [f for f, d in MANIFESTS if d["kind"] == "CustomResourceDefinition"]
    assert sorted(found) == sorted(f"crds/{n}" for n in crds.definitions())


def test_image_runs_as_the_pod_user() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    pod = BY_KIND["Deployment"]["spec"]["template"]["spec"]
    uid = pod["securityContext"]["runAsUser"]
    assert f"USER {uid}:{uid}" in dockerfile
    assert f"-t {pod['containers'][0]['image']} " in dockerfile
    assert 'ENTRYPOINT ["tenantctl"]' in dockerfile and pod["containers"][0]["args"][0] == "operator"
