# syntax=docker/dockerfile:1
# One build, four images: `make images` (or docker build --target operator|gateway|sandbox|egress).

FROM python:3.11-slim AS app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# The dependencies first, from pyproject.toml alone, so that a code change reuses this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > requirements.txt \
 && pip install --prefix=/install -r requirements.txt
COPY README.md ./
COPY tether tether
COPY operator operator
COPY gateway gateway
COPY sandbox sandbox
COPY egress egress
# tether.dev (the local stack, its control plane and node, the demo, fake vendors) is for
# development only: no image carries it.
RUN pip install --prefix=/install --no-deps . \
 && rm -rf /install/lib/python3.11/site-packages/tether/dev

FROM python:3.11-slim AS service
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=app /install /usr/local
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin tether
USER 10001
WORKDIR /tmp

FROM service AS operator
CMD ["python", "-m", "tether.operator"]

FROM service AS gateway
EXPOSE 8080
CMD ["python", "-m", "tether.gateway"]

# The egress proxy: mitmproxy, whose pins clash with the vendor SDKs', in an install of its own
# with the few platform modules it imports (egress/requirements.txt).
FROM python:3.11-slim AS egress-install
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY egress/requirements.txt ./
RUN pip install --prefix=/install -r requirements.txt
COPY --from=app /src /src
RUN pip install --prefix=/install --no-deps . \
 && rm -rf /install/lib/python3.11/site-packages/tether/dev

FROM python:3.11-slim AS egress
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=egress-install /install /usr/local
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin tether
USER 10001
WORKDIR /tmp
EXPOSE 3128
CMD ["python", "-m", "tether.egress"]

# The sandbox: where agents run code. Common data tools, git (repository sources), and
# Chromium with Playwright (the sandbox extra; its node driver needs libatomic1) for the browser
# tools. Non-root (uid 1000, as the sandbox pod runs it); /workspace is the pod's volume.
FROM python:3.11-slim AS sandbox
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 TETHER_CHROMIUM=/usr/bin/chromium
RUN apt-get update \
 && apt-get install -y --no-install-recommends bash ca-certificates curl git jq chromium fonts-liberation libatomic1 \
 && rm -rf /var/lib/apt/lists/*
RUN pip install "pandas>=2.2,<3" "numpy>=2,<3" "requests>=2.32,<3" "beautifulsoup4>=4.12,<5" "lxml>=5,<7"
COPY pyproject.toml /tmp/pyproject.toml
RUN python -c "import tomllib; print(*tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['optional-dependencies']['sandbox'], sep='\n')" > /tmp/sandbox.txt \
 && pip install -r /tmp/sandbox.txt && rm /tmp/pyproject.toml /tmp/sandbox.txt
COPY --from=app /install /usr/local
RUN useradd --uid 1000 --home-dir /workspace --shell /bin/bash sandbox && mkdir -p /workspace \
 && chown 1000:1000 /workspace
USER 1000
WORKDIR /workspace
CMD ["python", "-m", "tether.sandbox.workspace"]
