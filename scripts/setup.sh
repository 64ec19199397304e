#!/usr/bin/env bash
# Installs what building and testing Meridian needs, idempotently:
#   system: libclang-dev (RocksDB's bindings), python3-venv (client tests)
#   python: a venv with boto3, the aws CLI, requests and pytest (tests/clients/requirements.txt)
# Usage: scripts/setup.sh [system|python|all]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."

what="${1:-all}"
venv="${MERIDIAN_VENV:-$HOME/.cache/meridian/venv}"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "setup: need root to run: $*" >&2; return 1; fi
}

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 ||
        { as_root apt-get update -q >/dev/null && as_root apt-get install -y -q "${missing[@]}" >/dev/null; }
}

system() {
    apt_install libclang-dev
    # cargo-nextest is optional (the Makefile falls back to cargo test); pkg-config and a C++
    # compiler come with build-essential, which RocksDB's build needs.
    command -v c++ >/dev/null || apt_install build-essential
}

python() {
    local req=tests/clients/requirements.txt
    local stamp="$venv/.meridian-requirements"
    if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then
        return 0
    fi
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
        apt_install python3-venv
    fi
    echo "setup: creating the client-test venv at $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q -r "$req"
    cp "$req" "$stamp"
}

case "$what" in
    system) system ;;
    python) python ;;
    all) system; python ;;
    *) echo "usage: $0 [system|python|all]" >&2; exit 2 ;;
esac
