# computewatch: the agent, responder, alert bridge and pipelines, one image, entrypoint `computewatch`.
# Build: docker build -t computewatch:0.1.0 .   (docker-compose.yml builds it as that tag)
FROM python:3.11.11-slim-bookworm

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
