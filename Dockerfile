# syntax=docker/dockerfile:1
# The rewardq image: the CLI, the workers, the audit store and the HTTP gateway
# (`pip install .[worker,gateway]`; torch is pinned in pyproject.toml). docker-compose.yml runs every
# rewardq service from it.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY producer ./producer
COPY workers ./workers
COPY storage ./storage
# The cache mount keeps downloaded wheels (torch is gigabytes) across rebuilds, out of the image.
RUN --mount=type=cache,target=/root/.cache/pip pip install ".[worker,gateway]"

RUN useradd --create-home --uid 1000 rewardq
USER rewardq
WORKDIR /home/rewardq
# Created here, owned by rewardq, so a named volume mounted on it starts out writable.
ENV HF_HOME=/home/rewardq/.cache/huggingface
RUN mkdir -p "$HF_HOME"

CMD ["rewardq", "--help"]
