"""The Lambda entry point: the FastAPI app behind Mangum."""

import os

from mangum import Mangum
from skyport.registry import Registry

from .app import create_app

# Settings are read once per process; boto3 clients are created on first use.
app = create_app(Registry.from_env(os.environ))
handler = Mangum(
    app,
    lifespan="off",
    # Manifests are JSON under vendor media types: return them as text, not base64.
    text_mime_types=["application/json", "application/vnd.oci.", "application/vnd.docker.", "+json"],
)
