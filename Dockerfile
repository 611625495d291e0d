# The image every service in docker-compose.yml runs: hybridnas with its CLI, Optuna,
# optuna-dashboard and Ray. PyPI's torch wheels bundle CUDA, so the same image trains on
# the GPUs the NVIDIA container runtime hands to a worker and on the CPU elsewhere.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . .
RUN pip install .

RUN useradd --create-home hybridnas \
    && mkdir -p /artifacts /data \
    && chown hybridnas /artifacts /data
USER hybridnas

CMD ["hybridnas", "--help"]
