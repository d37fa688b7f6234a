# The gpualloc operator image: `docker build -t gpualloc:dev .`
# Small (python slim, no compilers in the final stage) and non-root; the base is pinned to an
# exact Python and Debian release.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/gpualloc
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN /opt/gpualloc/bin/pip install . && /opt/gpualloc/bin/gpualloc --help >/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="gpualloc" \
      org.opencontainers.image.description="Kubernetes operator: global CP-SAT allocation of GPU nodes to LLM jobs" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/gpualloc/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
COPY --from=build /opt/gpualloc /opt/gpualloc
# 65532: the conventional "nonroot" uid; the chart runs it with a read-only root filesystem
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["gpualloc"]
CMD ["run"]
