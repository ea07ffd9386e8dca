#!/usr/bin/env bash
# Install what the real argilla-server 2.8.0 test fixture needs, idempotently:
#   * Debian's redis-server (apt) when `redis-server` is not on PATH;
#   * a dedicated venv holding argilla-server and its old pins (pydantic 2.9, fastapi
#     0.115, typer 0.9), rebuilt when the requirement list below changes.
# The last line printed on stdout is the venv path.
# Env: HFADVISOR_ARGILLA_VENV (venv path), HFADVISOR_ARGILLA_PYTHON (base interpreter).
set -euo pipefail

VENV="${HFADVISOR_ARGILLA_VENV:-$HOME/.cache/hfadvisor/argilla-server-venv}"
BASE_PYTHON="${HFADVISOR_ARGILLA_PYTHON:-python3}"
# typer 0.9 (pinned by argilla-server) breaks on click >= 8.2.
REQUIREMENTS=(
    "argilla-server==2.8.0"
    "click<8.2"
)

log() { echo "[argilla-setup] $*" >&2; }
# pip, quietly; drops the harmless "Location ... is ignored" warnings of local extra indexes.
pip_quiet() {
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
}
start=$(date +%s)

# --- redis-server --------------------------------------------------------------------
if ! command -v redis-server >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            SUDO="sudo -n"
        else
            log "Argilla tests need redis-server: run \`sudo apt-get install redis-server\` (or run pytest as root)"
            exit 3
        fi
    fi
    log "installing redis-server with apt"
    export DEBIAN_FRONTEND=noninteractive
    if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends redis-server; } >&2; then
        log "Argilla tests need redis-server and \`apt-get install redis-server\` failed (network? apt sources?): install it by hand"
        exit 3
    fi
    # Debian starts a system-wide redis on install; the fixture runs its own.
    if command -v systemctl >/dev/null 2>&1; then
        $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
    fi
fi
log "redis-server: $(redis-server --version | head -n1)"

# --- argilla-server venv -------------------------------------------------------------
mkdir -p "$(dirname "$VENV")"
# Serialise concurrent runs (e.g. two pytest sessions) on the same venv.
exec 9>"$VENV.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

want_hash=$(
    {
        printf '%s\n' "${REQUIREMENTS[@]}"
        "$BASE_PYTHON" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -d' ' -f1
)
hash_file="$VENV/.hfadvisor-requirements.sha256"
if [ -x "$VENV/bin/python" ] && [ -f "$hash_file" ] && [ "$(cat "$hash_file")" = "$want_hash" ] \
    && "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(not u.find_spec("argilla_server"))' 2>/dev/null; then
    log "venv up to date: $VENV"
else
    log "creating venv $VENV (${REQUIREMENTS[*]})"
    rm -rf "$VENV"
    if ! "$BASE_PYTHON" -m venv "$VENV" >&2; then
        log "Argilla tests need '$BASE_PYTHON -m venv', which failed: on Debian run \`sudo apt-get install python3-venv\`"
        exit 3
    fi
    pip_quiet --upgrade pip
    pip_quiet "${REQUIREMENTS[@]}"
    # Smoke-import the app (it creates its home dir and reads redis settings, so use a scratch home).
    smoke_home=$(mktemp -d)
    ARGILLA_HOME_PATH="$smoke_home" "$VENV/bin/python" -c 'import argilla_server, uvicorn' >&2
    rm -rf "$smoke_home"
    echo "$want_hash" >"$hash_file"
fi

log "done in $(($(date +%s) - start)) s"
echo "$VENV"
