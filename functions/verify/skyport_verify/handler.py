"""The verifier's Lambda entry point (template.yaml: VerifyFunction).

Invoked by the API function with InvocationType=Event and ``{"upload_id": "..."}``
when a direct upload is completed: it completes the S3 multipart upload, reads the
object back and hashes it (``DirectUploadService.verify``), then registers the blob or
removes everything. Thin: the whole job is the core's. An error is raised, so that
Lambda retries the event (twice, asynchronous invocation); ``verify`` is idempotent.

Settings are read once, in the init phase; boto3 clients on first use.
"""

import os

from skyport.registry import Registry

registry = Registry.from_env(os.environ)


def handler(event: dict, context: object = None) -> dict:
    upload_id = event.get("upload_id") if isinstance(event, dict) else None
    if not isinstance(upload_id, str) or not 0 < len(upload_id) <= 64:
        return {"outcome": "ignored: no upload_id"}
    return {"upload_id": upload_id, "outcome": registry.direct_uploads.verify(upload_id)}
