"""The ``buckets`` stack: one S3-compatible bucket per region for the backup repositories.

Each region names an S3 endpoint (any provider's S3 API: Hetzner Object Storage, AWS,
MinIO, ...) and its credentials; the stack creates ``<prefix>-<region>`` there through
the ``minio`` provider (which speaks plain S3), private, with versioning if asked (so
that a compromised server cannot destroy the backups it wrote: BKP-3 copies). Exports
``inventory``: per region its endpoint, bucket and the restic repository URL.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import pulumi

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def bucket_name(prefix: str, region: str) -> str:
    name = f"{prefix}-{region}"
    if not _BUCKET.fullmatch(name) or ".." in name:
        raise ValueError(f"bucket name {name!r} is not a valid S3 bucket name (3-63 of a-z, 0-9, '.', '-')")
    return name


def _entry(r: Mapping[str, Any], versioning: bool, created: list[Any]) -> dict[str, Any]:
    bucket = created[0]
    return {"endpoint": r["endpoint"], "region": r.get("region"), "bucket": bucket, "versioning": versioning,
            "resticRepository": f"s3:https://{r['endpoint']}/{bucket}"}


def build(prefix: str, regions: Mapping[str, Mapping[str, Any]], *, versioning: bool,
          secret_keys: Mapping[str, pulumi.Input[str]]) -> pulumi.Output[dict[str, Any]]:
    import pulumi_minio as minio

    if not regions:
        raise ValueError("config regions: expected a mapping of region names to {endpoint, region, accessKey}")
    out: dict[str, Any] = {}
    for region, r in sorted(regions.items()):
        name = bucket_name(prefix, region)
        provider = minio.Provider(f"s3-{region}", minio_server=r["endpoint"], minio_region=r.get("region"),
                                  minio_user=r["accessKey"], minio_password=secret_keys[region], minio_ssl=True)
        opts = pulumi.ResourceOptions(provider=provider)
        bucket = minio.S3Bucket(f"backup-{region}", bucket=name, acl="private", force_destroy=False, opts=opts)
        done: pulumi.Output[Any] = pulumi.Output.from_input("")
        if versioning:
            done = minio.S3BucketVersioning(
                f"backup-{region}-versioning", bucket=bucket.bucket, opts=opts,
                versioning_configuration=minio.S3BucketVersioningVersioningConfigurationArgs(status="Enabled")).id
        # The inventory waits for the versioning too: it lists what exists.
        out[region] = pulumi.Output.all(bucket.bucket, done).apply(functools.partial(_entry, r, versioning))
    return pulumi.Output.all(**out).apply(lambda buckets: {"version": 1, "buckets": dict(buckets)})


def main() -> pulumi.Output[dict[str, Any]]:
    """The program: read the config, create, export (and return) the inventory."""
    cfg = pulumi.Config()
    regions = cfg.require_object("regions")
    secrets = {region: cfg.require_secret(f"secretKey-{region}") for region in regions}
    inventory = build(cfg.get("prefix") or "tenantctl-backup", regions,
                      versioning=cfg.get_bool("versioning") or False, secret_keys=secrets)
    pulumi.export("inventory", inventory)
    return inventory
