# computewatch: the agent, responder, alert bridge and pipelines, one image, entrypoint `computewatch`.
# Build: docker build -t computewatch:0.1.0 .   (docker-compose.yml builds it as that tag)
#
# Inside China's networks: the base image through a registry mirror or proxy cache of Docker
# Hub, Python packages through a PyPI mirror (pip reads PIP_INDEX_URL, PIP_EXTRA_INDEX_URL and
# PIP_TRUSTED_HOST from the environment; empty means pip's default), e.g.
#   docker build --build-arg CW_REGISTRY=harbor.example.cn/dockerhub \
#     --build-arg PIP_INDEX_URL=https://mirrors.aliyun.com/pypi/simple/ -t computewatch:0.1.0 .
ARG CW_REGISTRY=docker.io
FROM ${CW_REGISTRY}/library/python:3.11.11-slim-bookworm

# Build-time only: ARGs are not kept in the image's environment.
ARG PIP_INDEX_URL=""
ARG PIP_EXTRA_INDEX_URL=""
ARG PIP_TRUSTED_HOST=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged user owns the state directory; named volumes mounted below it (the agents'
# durable buffers) take its ownership when Docker first creates them.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/computewatch --create-home \
        computewatch \
    && mkdir -p /var/lib/computewatch/buffer /var/lib/computewatch/state \
    && chown -R computewatch:computewatch /var/lib/computewatch

WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY computewatch ./computewatch
COPY collectors ./collectors
COPY pipelines ./pipelines
COPY alerts ./alerts
COPY dashboards ./dashboards
COPY reports ./reports
# Runtime dependencies only: the `test` extra stays out of the image.
RUN pip install . && rm -rf /src

USER 10001:10001
WORKDIR /var/lib/computewatch
ENTRYPOINT ["computewatch"]
CMD ["--help"]
