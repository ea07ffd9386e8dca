#!/usr/bin/env bash
# Browser for the Space tests: Debian's chromium, driven by the Playwright Python package
# (`executable_path=/usr/bin/chromium`). Playwright's own browser download cannot work here.
# Idempotent: installs only when /usr/bin/chromium is missing. Run by the test suite on first
# use (tests/servers/browser.py); exit 3 means the last stderr line says what to do.
# The last line on stdout is the browser's path.
set -euo pipefail
log() { echo "[browser-setup] $*" >&2; }
if [ ! -x /usr/bin/chromium ]; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            SUDO="sudo -n"
        else
            log "browser tests need chromium: run \`sudo apt-get install chromium\` (or run pytest as root)"
            exit 3
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    log "installing chromium with apt-get"
    if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium; } >&2; then
        log "browser tests need chromium and \`apt-get install chromium\` failed (network? apt sources?): install it by hand"
        exit 3
    fi
fi
/usr/bin/chromium --version 2>/dev/null | head -n 1 >&2 || true
echo /usr/bin/chromium
