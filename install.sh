#!/usr/bin/env bash
# Installs everything rramlab needs on a Debian machine, as root (or with sudo):
# Debian's ngspice shared library and Qt's system libraries, a virtual environment in .venv, and rramlab with its test extras.
# Safe to run again: it only adds what is missing, and skips pip when pyproject.toml is unchanged
# since the last install into this .venv.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS=0
stage() { echo "install.sh [$1/3, ${SECONDS} s] $2"; }

# ngspice for the twin; the system libraries PySide6's Qt loads for `rramlab gui` (offscreen and on
# an X display: EGL/GL, fontconfig, xkbcommon, D-Bus, GLib and the xcb libraries of Qt's xcb plugin).
APT_PACKAGES="ngspice libngspice0 libegl1 libgl1 libfontconfig1 libxkbcommon0 libxkbcommon-x11-0 libdbus-1-3
  libglib2.0-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-render-util0 libxcb-image0"
missing=""
for pkg in $APT_PACKAGES; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  stage 1 "Debian packages:$missing (apt-get, about a minute)"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq $missing >/dev/null
else
  stage 1 "Debian packages: all present"
fi

PYTHON=${PYTHON:-python3}
if [ -x .venv/bin/python ]; then
  stage 2 "virtual environment .venv: present"
else
  stage 2 "virtual environment .venv: creating"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.rramlab-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -c "import rramlab.app.cli" 2>/dev/null; then
  stage 3 "pip install -e '.[test]': rramlab and its Python packages (about 2 minutes the first time; log in .venv/pip-install.log)"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
   # setuptools explains the editable mapping at length on every install; keep that in a log and
  # show it only when the install fails.
  if ! .venv/bin/python -m pip install --disable-pip-version-check -e '.[test]' >.venv/pip-install.log 2>&1; then
    cat .venv/pip-install.log >&2
    echo "install.sh: pip install failed (log above, also in .venv/pip-install.log)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
else
  stage 3 "Python packages: up to date with pyproject.toml"
fi
# every command's help, built once here (about a second): building one imports its protocol (numpy,
# pydantic), 10x the start-up of Python itself, so `rramlab COMMAND --help` would not start at once
# the first time; rebuilt whenever the code changed since (app/help_cache.py)
.venv/bin/python -m rramlab.app.help_cache >/dev/null || echo "install.sh: the help cache was not built (rramlab COMMAND --help still works, built on first use)" >&2
echo "rramlab $(.venv/bin/rramlab --version | cut -d' ' -f2) installed in $(pwd)/.venv (${SECONDS} s)"
