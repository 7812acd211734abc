"""The Lambda entry point (template.yaml: skyport_api.handler.handler).

Everything here runs once per execution environment, in the init phase:
settings are read from the environment, the app and the handler are built.
boto3 clients are not: they are created on the first request that needs one.
"""

import os

from skyport.registry import Registry

from .lambda_adapter import lambda_handler

registry = Registry.from_env(os.environ)
handler = lambda_handler(registry)
