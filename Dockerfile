# The API and rerank-worker image (docker-compose.yml builds it as imagescope:latest).
# Workers that talk to a vLLM server need no GPU libraries beyond torch's; for
# vLLM in-process build with --build-arg EXTRAS="[gpu]".
FROM python:3.11-slim
ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY plugin ./plugin
COPY rerank_workers ./rerank_workers
RUN pip install ".${EXTRAS}"
RUN useradd --create-home imagescope
USER imagescope
EXPOSE 8080
CMD ["imagescope", "serve", "--host", "0.0.0.0", "--port", "8080"]
