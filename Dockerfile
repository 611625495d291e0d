# The image every service in docker-compose.yml runs: hybridnas with its CLI, Optuna,
# optuna-dashboard and Ray. PyPI's torch wheels bundle CUDA, so the same image trains on
# the GPUs the NVIDIA container runtime hands to a worker and on the CPU elsewhere.
#
# PYTHON_IMAGE is any image with Python 3.11 and its venv module: python:3.11-slim by default,
# or deploy/build_local_images.sh's Debian one where no image registry is reachable (that script
# serves its wheels to this build over 127.0.0.1 and says so in PIP_INSTALL_OPTIONS).
# One stage, and the install last, in one RUN: the image is the base plus the virtual
# environment, with no second copy of it (as a multi-stage COPY --from makes) and no wheels.
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/hybridnas/bin:$PATH
RUN useradd --create-home hybridnas \
    && mkdir -p /artifacts /data \
    && chown hybridnas /artifacts /data
WORKDIR /home/hybridnas
CMD ["hybridnas", "--help"]
ARG PIP_INSTALL_OPTIONS=""
COPY . /tmp/hybridnas-src
RUN python3 -m venv /opt/hybridnas \
    && /opt/hybridnas/bin/pip install --no-cache-dir --disable-pip-version-check ${PIP_INSTALL_OPTIONS} \
        /tmp/hybridnas-src \
    && rm -rf /tmp/hybridnas-src
USER hybridnas
