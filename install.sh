#!/usr/bin/env bash
# Installs everything rramlab needs on a Debian machine, as root (or with sudo):
# Debian's ngspice shared library, a virtual environment in .venv, and rramlab with its test extras.
# Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")"

if ! dpkg -s libngspice0 >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq ngspice libngspice0 >/dev/null
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test]'
echo "rramlab installed in $(pwd)/.venv"
