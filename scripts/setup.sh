#!/usr/bin/env bash
# Installs what building and testing Meridian needs, idempotently:
#   system: libclang-dev (RocksDB's bindings), protobuf-compiler and libprotobuf-dev (etcd's
#           gRPC API, built by the etcd-client crate, imports protobuf's own .proto files, which
#           only libprotobuf-dev carries), etcd-server and etcd-client (the control plane of a
#           region of several nodes: tests start it and ask etcdctl whether it is up),
#           python3-venv (client tests), curl and promtool (Debian's prometheus package) for
#           deploy/
#   python: a venv with boto3, the aws CLI, requests and pytest (tests/clients/requirements.txt),
#           and one with s3fs (tests/clients-s3fs/requirements.txt; s3fs pins its own botocore)
# Usage: scripts/setup.sh [system|python|fuzz|all]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."

what="${1:-all}"
venv="${MERIDIAN_VENV:-$HOME/.cache/meridian/venv}"
s3fs_venv="${MERIDIAN_S3FS_VENV:-$HOME/.cache/meridian/venv-s3fs}"

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
    as_root apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
        { as_root apt-get update -q >/dev/null &&
            as_root apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
}

system() {
    apt_install libclang-dev
    command -v protoc >/dev/null || apt_install protobuf-compiler
    # Only recommended by protobuf-compiler, so --no-install-recommends leaves it out.
    [ -f /usr/include/google/protobuf/descriptor.proto ] || apt_install libprotobuf-dev
    command -v etcd >/dev/null || apt_install etcd-server
    # etcdctl: the tests and deploy/local-cluster.sh ask it whether etcd is up (only
    # recommended by etcd-server, so --no-install-recommends leaves it out).
    command -v etcdctl >/dev/null || apt_install etcd-client
    # curl drives deploy/local-regions.sh; promtool (Debian's prometheus) checks deploy/prometheus.
    command -v curl >/dev/null || apt_install curl
    command -v promtool >/dev/null || apt_install prometheus
    # cargo-nextest is optional (the Makefile falls back to cargo test); pkg-config and a C++
    # compiler come with build-essential, which RocksDB's build needs.
    command -v c++ >/dev/null || apt_install build-essential
}

# cargo-fuzz drives the fuzz targets (fuzz/; `make fuzz`, and briefly in `make test`). The
# version is pinned so a new release cannot change what CI runs.
fuzz() {
    if ! cargo fuzz --version 2>/dev/null | grep -q "0.13.2"; then
        echo "setup: installing cargo-fuzz"
        cargo install -q --locked cargo-fuzz --version 0.13.2
    fi
}

# make_venv DIR REQUIREMENTS: (re)creates DIR with exactly REQUIREMENTS unless it already has them.
make_venv() {
    local dir="$1" req="$2"
    local stamp="$dir/.meridian-requirements"
    if [ -x "$dir/bin/python" ] && [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then
        return 0
    fi
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
        apt_install python3-venv
    fi
    echo "setup: creating the venv at $dir ($req)"
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install -q --upgrade pip
    "$dir/bin/pip" install -q -r "$req"
    cp "$req" "$stamp"
}

python() {
    make_venv "$venv" tests/clients/requirements.txt
    make_venv "$s3fs_venv" tests/clients-s3fs/requirements.txt
}

case "$what" in
    system) system ;;
    python) python ;;
    fuzz) fuzz ;;
    all) system; python; fuzz ;;
    *) echo "usage: $0 [system|python|fuzz|all]" >&2; exit 2 ;;
esac
