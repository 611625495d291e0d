# The image every service in docker-compose.yml runs: hybridnas with its CLI, Optuna,
# optuna-dashboard and Ray. PyPI's torch wheels bundle CUDA, so the same image trains on
# the GPUs the NVIDIA container runtime hands to a worker and on the CPU elsewhere.
#
# PYTHON_IMAGE is any image with Python 3.11 and its venv module: python:3.11-slim by default,
# or deploy/build_local_images.sh's Debian one where no image registry is reachable. pip looks
# in deploy/wheels first (that script fills it; empty, everything comes from the index), and
# PIP_INSTALL_OPTIONS=--no-index keeps it off the network. The build stage, with its copy of
# the wheels, stays out of the final image: only the virtual environment is carried over.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ARG PIP_INSTALL_OPTIONS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY . /src
RUN python3 -m venv /opt/hybridnas \
    && /opt/hybridnas/bin/pip install --find-links /src/deploy/wheels ${PIP_INSTALL_OPTIONS} /src

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/hybridnas/bin:$PATH
COPY --from=build /opt/hybridnas /opt/hybridnas
RUN useradd --create-home hybridnas \
    && mkdir -p /artifacts /data \
    && chown hybridnas /artifacts /data
USER hybridnas
WORKDIR /home/hybridnas

CMD ["hybridnas", "--help"]
