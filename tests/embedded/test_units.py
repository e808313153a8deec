"""Pure parts of the embedded driver and of provisioning: no engine, no servers (these
run everywhere)."""

from __future__ import annotations

import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from controller import provisioning
from controller.drivers import embedded
from controller.drivers.embedded import claims, errors, image, servers
from controller.model import kinds
from controller.provisioning import ansible

DOC = {
    "apiVersion": "tenantctl.io/v1",
    "kind": "Server",
    "metadata": {"name": "eu-west-1"},
    "spec": {
        "region": "eu-west",
        "provider": "docker",
        "address": "127.0.10.1",
        "ips": [{"address": "127.0.10.1", "type": "shared"}, {"address": "127.0.10.2", "type": "dedicated"}],
        "roles": ["web", "dns"],
        "capacity": {"sites": 500},
    },
}


class TestServerSpec:
    def test_from_a_whole_document(self) -> None:
        spec = embedded.ServerSpec.from_dict(DOC)
        assert (spec.name, spec.region, spec.address, spec.roles) == ("eu-west-1", "eu-west", "127.0.10.1",
                                                                      ("web", "dns"))
        assert spec.ips[1] == servers.IpSpec(address="127.0.10.2", type="dedicated")
        assert spec.addresses == ["127.0.10.1", "127.0.10.2"]

    def test_from_flat_fields(self) -> None:
        spec = embedded.ServerSpec.from_dict({"name": "a", "address": "127.0.30.1", "roles": ["backup"]})
        assert spec.provider == "docker"
        assert spec.roles == ("backup",)

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            pytest.param({"name": "Bad_Name", "address": "127.0.0.5"}, "DNS label", id="name"),
            pytest.param({"name": "a", "address": "10.0.0.1"}, "127.0.0.0/8", id="not-loopback"),
            pytest.param({"name": "a", "address": "127.0.0.5; rm -rf /"}, "does not appear", id="garbage"),
            pytest.param({"name": "a", "address": "127.0.0.5", "roles": ["mail"]}, "unknown roles", id="role"),
            pytest.param({"name": "a", "address": "127.0.0.5", "os": "debian-11"}, "unknown os", id="os"),
        ],
    )
    def test_rejects(self, fields: dict[str, object], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            embedded.ServerSpec.from_dict(fields)

    @pytest.mark.parametrize(
        ("os", "suite"),
        [pytest.param(None, "bookworm", id="default-debian-12"), pytest.param("debian-13", "trixie", id="debian-13")],
    )
    def test_the_os_picks_the_image_suite(self, os: str | None, suite: str) -> None:
        doc = {**DOC, "spec": {**DOC["spec"], **({"os": os} if os else {})}}
        spec = embedded.ServerSpec.from_dict(doc)
        assert (spec.os, spec.suite) == (os or "debian-12", suite)
        assert spec.suite in image.SUITES

    def test_ssh_servers_may_use_any_address(self) -> None:
        spec = embedded.ServerSpec.from_dict({"name": "a", "provider": "ssh", "address": "192.0.2.10"})
        assert servers.docker_servers([spec]) == []

    def test_two_servers_on_one_address_are_refused(self) -> None:
        a = embedded.ServerSpec.from_dict({"name": "a", "address": "127.0.30.1"})
        b = embedded.ServerSpec.from_dict({"name": "b", "address": "127.0.31.1", "ips": ["127.0.30.1"]})
        with pytest.raises(errors.ServerError, match=r"127\.0\.30\.1"):
            servers.docker_servers([a, b])

    def test_services_follow_roles(self) -> None:
        spec = embedded.ServerSpec.from_dict({"name": "a", "address": "127.0.30.1", "roles": ["db-postgresql"]})
        assert servers.services_of(spec) == ["ssh", "postgresql", "node-exporter", "postgres-exporter"]

    def test_a_backup_server_runs_the_restic_repository_server(self) -> None:
        spec = embedded.ServerSpec.from_dict({"name": "a", "address": "127.0.30.1", "roles": ["dns", "backup"]})
        assert servers.services_of(spec) == ["ssh", "pdns", "pdns-api", "restic-rest", "node-exporter"]
        assert servers.SERVICE_PORTS["restic-rest"] == (provisioning.backup.PORT, "backup")


class TestEnvironments:
    def test_the_id_derives_from_the_resolved_state_dir(self, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        first = embedded.env_id(tmp_path / "a")
        assert len(first) == 8 and int(first, 16) >= 0
        monkeypatch.chdir(tmp_path)
        assert embedded.env_id(Path("a")) == first
        assert embedded.env_id(tmp_path / "b" / ".." / "a") == first
        assert embedded.env_id(tmp_path / "b") != first

    def test_container_names_are_scoped_by_environment(self) -> None:
        spec = embedded.ServerSpec.from_dict(DOC)
        assert servers.container_name("0123abcd", spec) == "tenantctl-0123abcd-eu-west-1"
        assert servers.container_name("0123abcd", spec) != servers.container_name("4567ef01", spec)

    def test_a_held_environment_is_in_use_until_released(self, tmp_path: Path) -> None:
        assert not claims.in_use(tmp_path)
        with embedded.hold(tmp_path):
            assert claims.in_use(tmp_path)
            with pytest.raises(errors.EmbeddedError, match="in use by another process"), embedded.hold(tmp_path):
                pass
        assert not claims.in_use(tmp_path)
        assert not claims.in_use(tmp_path / "gone")

    @pytest.mark.parametrize(
        ("entries", "healthy"),
        [
            pytest.param([{"state": "running", "services": {"ssh": "up", "nginx": "up"}}], True, id="all-up"),
            pytest.param([{"state": "running", "services": {"ssh": "up", "nginx": "down"}}], False, id="service"),
            pytest.param([{"state": "stopped", "services": {"ssh": "down"}}], False, id="stopped"),
            pytest.param([{"state": "missing", "services": {}}], False, id="missing"),
        ],
    )
    def test_health_of_a_status(self, entries: list[dict[str, object]], healthy: bool) -> None:
        assert servers.healthy(entries) is healthy

    def test_down_says_what_it_kept(self) -> None:
        kept = embedded.Down(env="0123abcd", stopped=("a", "b")).describe()
        assert "kept their data" in kept[0] and "--destroy-data" in kept[0]
        gone = embedded.Down(env="0123abcd", removed=("a",), engine_stopped=True).describe()
        assert gone[0] == "removed a and their data"
        assert "Docker engine" in gone[1]


class TestImageInputs:
    def test_mirror_comes_from_the_deb822_sources(self, tmp_path: Path) -> None:
        sources = tmp_path / "debian.sources"
        sources.write_text(
            "Types: deb\n# http://old.example/debian\nURIs: http://mirror.example/debian\n"
            "Suites: bookworm bookworm-updates\nComponents: main\n\n"
            "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
        )
        assert image.debian_mirror(sources) == "http://mirror.example/debian"
        assert image.debian_mirror(tmp_path / "missing") == image.FALLBACK_MIRROR

    def test_build_key_changes_with_any_context_file(self, tmp_path: Path) -> None:
        (tmp_path / "Dockerfile").write_text("FROM x\n")
        (tmp_path / "entrypoint.sh").write_text("#!/bin/sh\n")
        first = image.context_key("base1", tmp_path)
        assert image.context_key("base1", tmp_path) == first
        assert image.context_key("base2", tmp_path) != first
        (tmp_path / "entrypoint.sh").write_text("#!/bin/sh\nexit 0\n")
        assert image.context_key("base1", tmp_path) != first

    def test_a_suite_overlay_replaces_files_and_changes_only_its_key(self, tmp_path: Path) -> None:
        context, overlay = tmp_path / "image", tmp_path / "image-trixie"
        for d in (context, overlay):
            d.mkdir()
        (context / "Dockerfile").write_text("FROM tenantctl/base:bookworm\n")
        (context / "entrypoint.sh").write_text("#!/bin/sh\n")
        alone = image.context_key("base1", context)
        assert image.context_key("base1", context, None) == alone  # bookworm: as before overlays
        (overlay / "Dockerfile").write_text("FROM tenantctl/base:trixie\n")
        files = image.context_files(context, overlay)
        assert sorted(files) == ["Dockerfile", "entrypoint.sh"]
        assert files["Dockerfile"] == overlay / "Dockerfile" and files["entrypoint.sh"] == context / "entrypoint.sh"
        assert image.context_key("base1", context, overlay) != alone
        assert image.context_key("base1", context) == alone
        with tarfile.open(fileobj=image.context_tar(files)) as tar:
            assert tar.getnames() == ["Dockerfile", "entrypoint.sh"]
            dockerfile = tar.extractfile("Dockerfile")
            assert dockerfile is not None and dockerfile.read() == b"FROM tenantctl/base:trixie\n"

    def test_bookworm_keeps_its_keys_and_trixie_has_its_own(self) -> None:
        mirror = "http://deb.debian.org/debian"
        assert image.rootfs_key(mirror) == image.rootfs_key(mirror, "bookworm")
        assert image.rootfs_key(mirror, "trixie") != image.rootfs_key(mirror)
        assert image.overlay_dir("bookworm") is None
        with pytest.raises(errors.ImageError, match="sid"):
            image.rootfs_key(mirror, "sid")

    @pytest.mark.parametrize("suite", [pytest.param(s, id=s) for s in image.SUITES])
    def test_each_suite_installs_its_release_php(self, suite: str) -> None:
        overlay = image.overlay_dir(suite)
        dockerfile = image.context_files(image.CONTEXT_DIR, overlay)["Dockerfile"].read_text()
        release = next(r for r in kinds.RELEASES.values() if r.suite == suite)
        assert f"FROM tenantctl/base:{suite}\n" in dockerfile
        assert f"php{release.php}-fpm" in dockerfile and "pgbackrest" in dockerfile

    def test_the_role_knows_the_releases_of_the_model(self) -> None:
        role = Path(image.PLAYBOOKS_DIR) / "roles" / "tenantctl_server" / "vars" / "main.yml"
        table = yaml.safe_load(role.read_text())["tenantctl_server_releases"]
        assert table == {r.suite: {"php": r.php, "mariadb": r.mariadb, "postgresql": r.postgresql}
                         for r in kinds.RELEASES.values()}
        assert set(table) == set(image.SUITES)

    def test_the_shipped_context_has_its_dockerfile(self) -> None:
        assert (image.CONTEXT_DIR / "Dockerfile").read_text().startswith("#")
        assert "policy-rc.d" in (image.CONTEXT_DIR / "Dockerfile").read_text()


class TestProvisioning:
    def test_inventory_targets_each_address_as_root_with_our_key(self, tmp_path: Path) -> None:
        spec = embedded.ServerSpec.from_dict(DOC)
        host_ = provisioning.Host("eu-west-1", "127.0.10.1", ("web", "dns"))
        inv = ansible.inventory([host_], tmp_path / "key", {"eu-west-1": {"tenantctl_pdns_api_key": "k"}})
        assert ansible.inventory([spec], tmp_path / "key", {"eu-west-1": {"tenantctl_pdns_api_key": "k"}}) == inv
        host = inv["all"]["hosts"]["eu-west-1"]
        assert host["ansible_host"] == "127.0.10.1"
        assert host["ansible_user"] == "root"
        assert host["ansible_ssh_private_key_file"] == str(tmp_path / "key")
        assert host["tenantctl_roles"] == ["web", "dns"]
        assert host["tenantctl_pdns_api_key"] == "k"

    def test_the_first_failed_task_is_mapped(self) -> None:
        events = [
            {"event": "runner_on_ok", "event_data": {"host": "a", "task": "fine", "res": {}}},
            {"event": "runner_on_failed", "event_data": {"host": "a", "task": "ignored", "ignore_errors": True,
                                                         "res": {"msg": "nope"}}},
            {"event": "runner_on_failed", "event_data": {"host": "b", "task": "Start nginx",
                                                         "res": {"msg": "Unable to start", "stderr": "bind()"}}},
        ]
        exc = ansible.failure(SimpleNamespace(events=events, status="failed", rc=2))
        assert (exc.host, exc.task, exc.status) == ("b", "Start nginx", "failed")
        assert str(exc) == "b: Start nginx: Unable to start: bind()"
        assert isinstance(exc, provisioning.errors.ProvisioningError)
        assert errors.PlaybookError is provisioning.errors.PlaybookError

    def test_a_rescued_failure_gives_way_to_the_one_that_stopped_the_host(self) -> None:
        events = [
            {"event": "runner_on_failed", "event_data": {"host": "a", "task": "Wait for PostgreSQL",
                                                         "res": {"msg": "Timeout when waiting"}}},
            {"event": "runner_on_ok", "event_data": {"host": "a", "task": "Read the cluster's log", "res": {}}},
            {"event": "runner_on_failed", "event_data": {"host": "a", "task": "Fail with the cluster's log",
                                                         "res": {"msg": "17 main down: FATAL bind"}}},
            {"event": "runner_on_failed", "event_data": {"host": "b", "task": "Start nginx",
                                                         "res": {"msg": "Unable to start"}}},
        ]
        exc = ansible.failure(SimpleNamespace(events=events, status="failed", rc=2))
        assert (exc.host, exc.task) == ("a", "Fail with the cluster's log")
        assert "FATAL bind" in str(exc)

    def test_unreachable_is_mapped_too(self) -> None:
        events = [{"event": "runner_on_unreachable", "event_data": {"host": "a", "task": "t",
                                                                    "res": {"msg": "ssh: refused"}}}]
        exc = ansible.failure(SimpleNamespace(events=events, status="failed", rc=4))
        assert exc.status == "unreachable"


class TestState:
    def test_credentials_are_generated_once_and_private(self, tmp_path: Path) -> None:
        first = provisioning.credentials(tmp_path, "a")
        assert provisioning.credentials(tmp_path, "a") == first
        assert (tmp_path / "secrets" / "a.json").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700
        assert all(v.isalnum() and len(v) >= 16 for k, v in first.items() if not k.endswith("_user"))
        assert provisioning.credentials(tmp_path, "b") != first

    def test_the_ssh_key_is_made_once_and_private(self, tmp_path: Path) -> None:
        key = provisioning.ssh_key(tmp_path)
        public = key.with_suffix(".pub").read_text()
        assert public.startswith("ssh-ed25519 ")
        assert key.stat().st_mode & 0o777 == 0o600
        assert provisioning.ssh_key(tmp_path) == key
        assert key.with_suffix(".pub").read_text() == public

    def test_the_bootstrap_depends_on_the_role_files(self) -> None:
        names = {p.name for p in provisioning.roles.sources()}
        assert {"bootstrap.yml", "common.yml", "main.yml"} <= names
        assert len(provisioning.roles.digest()) == 64

    def test_exports(self) -> None:
        assert set(embedded.__all__) == {"Down", "ServerSpec", "bootstrap", "env_down", "env_id", "env_status",
                                         "env_up", "errors", "hold", "remove_abandoned"}
        assert {"bootstrap", "credentials", "ssh_key", "Host", "Target"} <= set(provisioning.__all__)
