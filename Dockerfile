# The hpsearch image: workers and the dashboard run from it (see docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 PIP_NO_CACHE_DIR=1
RUN useradd --create-home --uid 1000 hpsearch && mkdir -p /artifacts /data && chown hpsearch /artifacts
WORKDIR /app
COPY pyproject.toml README.md ./
COPY hpsearch ./hpsearch
COPY models ./models
COPY search ./search
COPY storage ./storage
COPY studies ./studies
RUN pip install '.[s3]'
USER hpsearch
CMD ["hpsearch", "--help"]
