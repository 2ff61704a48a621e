# peapod's tasks. `just` comes from PyPI (rust-just); see the README for the first line on a new machine.

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := justfile_directory() / ".venv"
bin := venv / "bin"

# Install system packages (Debian, as root) and the project with its dev tools into .venv.
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    packages=$(grep -v '^#' packaging/apt-packages.txt | xargs)
    missing=$(for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
    if [ -n "$missing" ]; then
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
        else
            echo "missing Debian packages (run as root or install them): $missing" >&2
            exit 1
        fi
    fi
    [ -x "{{bin}}/python" ] || python3 -m venv "{{venv}}"
    "{{bin}}/pip" install -q --upgrade pip
    "{{bin}}/pip" install -q -e '.[dev]'

# The local cluster in one process (root, Podman): control plane (API on 127.0.0.1:6443), an agent on this
# machine, the guestbook on http://localhost:30001/, then the dashboard; q or Ctrl-C stops it all
# (`just up --headless`, `--example none`, `--manifests DIR`, `--keep-pods`; `pea down --purge` removes it).
up *ARGS:
    "{{bin}}/pea" up {{ARGS}}

# N nodes on this machine (root, Podman): one network namespace, Podman service and agent per node, a lab
# LAN 192.168.77.0/24 and host-gw pod routes; prints the API URL and token, Ctrl-C removes everything.
cluster N="3":
    "{{bin}}/python" examples/testbed/cluster.py {{N}}

# Unit, API, scheduler, CLI and end-to-end tests (the README's test command; what CI runs).
test *ARGS:
    "{{bin}}/python" -m pytest -q -p no:cacheprovider {{ARGS}}

# The benchmark suite (bench/suite.py; root for Podman, nftables): every benchmark in turn, a table of the
# headline figures against the goals, a new dated section in bench/RESULTS.md (< 15 min). `just bench quick`:
# every benchmark's quick mode (< 2 min), table printed only. `just bench full --only api,watch`: a subset.
bench MODE="full" *ARGS:
    "{{bin}}/python" bench/suite.py {{MODE}} {{ARGS}}

# ruff (lint + format check) and mypy.
lint:
    "{{bin}}/ruff" check .
    "{{bin}}/ruff" format --check .
    "{{bin}}/mypy"
