# The bundled Redis of the local stack, on the same base as Tether's images (no registry here).
FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server redis-tools \
 && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["redis-server"]
