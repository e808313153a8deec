"""MOCK tests of the ``buckets`` stack (pulumi.runtime.set_mocks, no CLI or cloud)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import buckets_stack
import pulumi
import pytest
import yaml

from .conftest import RecordingMocks

REGIONS = {
    "eu-west": {"endpoint": "fsn1.your-objectstorage.com", "region": "fsn1", "accessKey": "AK1"},
    "us-east": {"endpoint": "s3.example-storage.net", "region": "us-east-1", "accessKey": "AK2"},
}
SECRETS = {"eu-west": pulumi.Output.secret("sk1"), "us-east": pulumi.Output.secret("sk2")}


@pulumi.runtime.test
def test_one_private_bucket_per_region_on_its_own_endpoint(mocks: RecordingMocks) -> Any:
    """MOCK: a provider per region endpoint, a private bucket on each, versioning when asked."""
    inv = buckets_stack.build("acme-backup", REGIONS, versioning=True, secret_keys=SECRETS)

    def check(inv: dict[str, Any]) -> None:
        providers = {p.name: p.inputs for p in mocks.of_type("pulumi:providers:minio")}
        assert providers["s3-eu-west"]["minioServer"] == "fsn1.your-objectstorage.com"
        assert providers["s3-us-east"]["minioRegion"] == "us-east-1"
        buckets = mocks.of_type("minio:index/s3Bucket:S3Bucket")
        assert sorted(b.inputs["bucket"] for b in buckets) == ["acme-backup-eu-west", "acme-backup-us-east"]
        assert all(b.inputs["acl"] == "private" for b in buckets)
        by_bucket = {b.inputs["bucket"]: b.provider or "" for b in buckets}
        assert "s3-eu-west" in by_bucket["acme-backup-eu-west"]  # created on its own region's endpoint
        versioning = mocks.of_type("minio:index/s3BucketVersioning:S3BucketVersioning")
        assert sorted(v.inputs["versioningConfiguration"]["status"] for v in versioning) == ["Enabled", "Enabled"]
        assert inv["buckets"]["eu-west"] == {
            "endpoint": "fsn1.your-objectstorage.com", "region": "fsn1", "bucket": "acme-backup-eu-west",
            "versioning": True,
            "resticRepository": "s3:https://fsn1.your-objectstorage.com/acme-backup-eu-west"}

    return inv.apply(check)


@pulumi.runtime.test
def test_no_versioning_unless_asked(mocks: RecordingMocks) -> Any:
    """MOCK: versioning off creates no versioning resource."""
    inv = buckets_stack.build("acme-backup", REGIONS, versioning=False, secret_keys=SECRETS)

    def check(inv: dict[str, Any]) -> None:
        assert mocks.of_type("minio:index/s3BucketVersioning:S3BucketVersioning") == []
        assert sorted(inv["buckets"]) == ["eu-west", "us-east"]

    return inv.apply(check)


@pytest.mark.parametrize(("prefix", "ok"), [
    pytest.param("acme", True, id="plain"),
    pytest.param("Acme", False, id="upper-case"),
    pytest.param("a" * 60, False, id="too-long"),
    pytest.param("acme..x", False, id="double-dot"),
])
def test_bucket_names(prefix: str, ok: bool) -> None:
    if ok:
        assert buckets_stack.bucket_name(prefix, "eu-west") == f"{prefix}-eu-west"
    else:
        with pytest.raises(ValueError, match="not a valid S3 bucket name"):
            buckets_stack.bucket_name(prefix, "eu-west")


@pulumi.runtime.test
def test_main_reads_the_stack_config(mocks: RecordingMocks) -> Any:
    """MOCK: the program Pulumi runs (main) with Pulumi.example.yaml and one secret per region."""
    example = yaml.safe_load((Path(buckets_stack.__file__).parent / "Pulumi.example.yaml").read_text())["config"]
    config = {k.replace("tenantctl-buckets:", "tenantctl-test:"): v if isinstance(v, str) else json.dumps(v)
              for k, v in example.items()}
    config.update({"tenantctl-test:secretKey-eu-west": "s1", "tenantctl-test:secretKey-us-east": "s2"})
    pulumi.runtime.set_all_config(config, secret_keys=["tenantctl-test:secretKey-eu-west",
                                                       "tenantctl-test:secretKey-us-east"])
    try:
        inv = buckets_stack.main()
    finally:
        pulumi.runtime.set_all_config({})

    def check(inv: dict[str, Any]) -> None:
        assert sorted(b["bucket"] for b in inv["buckets"].values()) == ["acme-tenantctl-backup-eu-west",
                                                                       "acme-tenantctl-backup-us-east"]
        assert all(b["versioning"] is False for b in inv["buckets"].values())
        providers = {p.name: p.inputs for p in mocks.of_type("pulumi:providers:minio")}
        assert providers["s3-eu-west"]["minioUser"] == "EXAMPLEKEY"

    return inv.apply(check)
