#!/usr/bin/env bash
# Installs the non-Rust tools the test suite uses, if missing:
# - kcat (Debian package) for the command-line compatibility check;
# - kafka-python and confluent-kafka (PyPI) for the Python compatibility checks.
# librdkafka itself is built from source by the rdkafka crate; it needs a C toolchain,
# make and perl, which the Rust image has.
set -euo pipefail

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "install-test-deps: need root (or sudo) to run: $*" >&2; return 1; fi
}

if ! command -v kcat >/dev/null 2>&1; then
  echo "install-test-deps: installing kcat"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq kcat >/dev/null
fi

if ! python3 -c 'import kafka, confluent_kafka' >/dev/null 2>&1; then
  echo "install-test-deps: installing kafka-python and confluent-kafka"
  python3 -m pip install --quiet --disable-pip-version-check kafka-python confluent-kafka
fi
