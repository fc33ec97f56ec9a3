# syntax=docker/dockerfile:1
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 gateway
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/* && rm -rf /wheels
WORKDIR /home/gateway
COPY --chown=gateway:gateway models.yaml ./models.yaml
USER gateway
ENV GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8080 \
    GATEWAY_DATABASE_URL=sqlite:////home/gateway/data/gateway.db \
    GATEWAY_MODELS=/home/gateway/models.yaml
RUN mkdir -p /home/gateway/data
VOLUME ["/home/gateway/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)" || exit 1
# SIGTERM drains in-flight calls and flushes usage before exit.
STOPSIGNAL SIGTERM
CMD ["gateway", "serve"]
