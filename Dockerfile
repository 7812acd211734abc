# The upload service image: `skyport serve-uploads` (template.yaml, UploadTaskDefinition).
# Build and push it with `make upload-image` (README, "Deploy the upload service").
#
# Built for the task's architecture, linux/arm64 by default (template.yaml runs the task
# on Graviton): on an x86-64 machine that needs QEMU emulation registered with the
# kernel, or an arm64 build machine. Every package is a wheel for both (rehashes, the
# one native dependency, ships aarch64 wheels).

# Pinned by version; the Lambda function runs python3.12 too.
FROM python:3.12.8-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/skyport
WORKDIR /src
# The service's own dependency set, derived from the lock for python3.12 on arm64 (`make
# lock`; tests/unit/test_lock.py): the core, the ASGI app and uvicorn; nothing for tests or
# local serving (moto) and nothing for Lambda. --no-deps: pip resolves nothing of its own.
# First and alone, so that a code change does not reinstall the dependencies.
COPY requirements/upload-service.txt requirements/upload-service.txt
RUN /opt/skyport/bin/pip install --no-deps -r requirements/upload-service.txt
COPY pyproject.toml ./
COPY layers/skyport/skyport layers/skyport/skyport
COPY functions/api/skyport_api functions/api/skyport_api
COPY cli/skyport_cli cli/skyport_cli
# A regular (not editable) install: the image holds no source tree. No `pip check`: the
# project also declares what `make run` needs (moto), which this image leaves out; the
# import below proves the command's own imports are here (tests/e2e/test_upload_service.py
# runs the command from exactly this set). Compiled now, since the container's root file
# system is read-only (ReadonlyRootFilesystem in the template).
RUN /opt/skyport/bin/pip install --no-deps . \
 && /opt/skyport/bin/python -c "import skyport_cli.serve, skyport_api.upload_service, uvicorn" \
 && /opt/skyport/bin/python -m compileall -q /opt/skyport

FROM python:3.12.8-slim-bookworm
COPY --from=build /opt/skyport /opt/skyport
# Not root: a numeric id, so that ECS (and any runtime) can tell without a passwd lookup.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin skyport
USER 10001:10001
ENV PATH=/opt/skyport/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
EXPOSE 8080
# ECS relies on the load balancer's health check (GET /healthz); this one serves `docker run`.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
CMD ["skyport", "serve-uploads", "--host", "0.0.0.0", "--port", "8080"]
