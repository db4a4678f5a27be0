# Production image: web, worker, beat and the emulator all run from it (compose picks the command).
FROM python:3.12-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    VAR_DIR=/data STATIC_ROOT=/app/staticfiles MEDIA_ROOT=/data/media
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends libmagic1 curl \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
# collectstatic needs settings to load; this throwaway key exists only during the build.
RUN DEBUG=0 SECRET_KEY=build-only-not-secret-collectstatic-key-0123456789abcdefghij \
    python manage.py collectstatic --noinput -v 0 \
    && useradd --create-home --uid 10001 app && mkdir -p /data && chown -R app /data /app
USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/healthz > /dev/null || exit 1
CMD ["python", "-m", "uvicorn", "claudeapp.asgi:application", "--host", "0.0.0.0", "--port", "8000", \
     "--ws", "websockets", "--lifespan", "off", "--proxy-headers", "--forwarded-allow-ips", "*", \
     "--no-access-log"]
