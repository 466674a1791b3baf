"""The bucket a service's backups live in (S3 API; boto3, which reads the AWS_* variables:
keys, and AWS_CA_BUNDLE for an endpoint with a private CA)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

# Bounded: a down endpoint fails the Job within minutes, and the next run retries.
_CLIENT_CONFIG = Config(
    retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=10, read_timeout=120
)


@dataclass
class BackupStore:
    """One service's folder (``<prefix>/<env>/<service>/``) in one bucket."""

    bucket: str
    folder: str
    endpoint: str | None
    region: str

    def __post_init__(self) -> None:
        self._client: Any = boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region, config=_CLIENT_CONFIG
        )

    def upload(self, path: Path, key: str) -> None:
        self._client.upload_file(str(path), self.bucket, key)

    def put_text(self, key: str, text: str) -> None:
        self._client.put_object(
            Bucket=self.bucket, Key=key, Body=text.encode(), ContentType="application/json"
        )

    def download(self, key: str, path: Path) -> None:
        self._client.download_file(self.bucket, key, str(path))

    def read_text(self, key: str) -> str:
        body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
        return str(body.read().decode())

    def list_keys(self) -> list[str]:
        """Every object of the folder."""
        found: list[str] = []
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.folder
        )
        for page in pages:
            found += [obj["Key"] for obj in page.get("Contents") or []]
        return found

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=key)
