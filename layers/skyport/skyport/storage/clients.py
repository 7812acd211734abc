"""boto3 clients: one session per process, each client created on first use.

Creating a client costs tens of milliseconds and importing boto3 more, so
neither happens at import time nor per request.
"""

from __future__ import annotations

import threading
from functools import cached_property
from typing import Any

from ..config import Settings


class AwsClients:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()

    @cached_property
    def _session(self) -> Any:
        import boto3  # deferred: the import alone is ~150 ms of cold start

        return boto3.session.Session(region_name=self._settings.region)

    def _client(self, service: str, endpoint: str | None, **config: Any) -> Any:
        from botocore.config import Config

        # The SDK's own retries handle throttling; checksums only when a
        # service requires them, so big part uploads are not hashed twice.
        base = Config(
            retries={"max_attempts": 5, "mode": "standard"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=32,
            **config,
        )
        with self._lock:  # boto3 sessions are not thread-safe while creating clients
            return self._session.client(service, endpoint_url=endpoint, config=base)

    @cached_property
    def s3(self) -> Any:
        s3_config: dict[str, Any] = {
            "addressing_style": "path" if self._settings.s3_endpoint else "virtual",
            # Presigned URLs name the bucket's regional endpoint
            # (BUCKET.s3.REGION.amazonaws.com), never the global one, and never a
            # host under the registry's own domain: Go clients would forward the
            # registry's Authorization header to a subdomain, and S3 refuses it.
            "us_east_1_regional_endpoint": "regional",
        }
        # SigV4 explicitly: S3 accepts presigned URLs only as SigV4 in every region opened
        # since 2014, and botocore's default for presigning differs by region.
        return self._client("s3", self._settings.s3_endpoint, signature_version="s3v4", s3=s3_config)

    @cached_property
    def dynamodb(self) -> Any:
        return self._client("dynamodb", self._settings.dynamodb_endpoint)

    # The table's stream, read by the local events pipeline and the tests (issue 11);
    # moto serves it on the DynamoDB endpoint.
    @cached_property
    def dynamodbstreams(self) -> Any:
        return self._client("dynamodbstreams", self._settings.dynamodb_endpoint)

    # Token signing keys and the first admin's credentials (auth on, deployed). No
    # endpoint of our own: AWS, or AWS_ENDPOINT_URL_SECRETS_MANAGER / _SSM.
    @cached_property
    def secretsmanager(self) -> Any:
        return self._client("secretsmanager", None)

    @cached_property
    def ssm(self) -> Any:
        return self._client("ssm", None)

    # Direct uploads: the API function starts the verifier function (asynchronously).
    @cached_property
    def lambda_(self) -> Any:
        return self._client("lambda", None)

    # The registry events' bus (issue 11; skyport.event_bus), used by the events function.
    # No endpoint of our own: AWS, or AWS_ENDPOINT_URL_EVENTBRIDGE (moto in the tests).
    @cached_property
    def events(self) -> Any:
        return self._client("events", None)

    # The replication and webhook queues (issue 11; skyport.sqs_batches): backoff by
    # ChangeMessageVisibility, failures parked in a dead-letter queue. No endpoint of our
    # own: AWS, or AWS_ENDPOINT_URL_SQS (moto locally and in the tests).
    @cached_property
    def sqs(self) -> Any:
        return self._client("sqs", None)

    # Replication to another Skyport with `&role=ARN` (issue 11; skyport.replication): the
    # destination's clients use that role's credentials, refreshed through STS.
    @cached_property
    def sts(self) -> Any:
        return self._client("sts", None)
