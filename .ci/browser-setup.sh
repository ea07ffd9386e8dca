#!/usr/bin/env bash
# Browser for the Space tests: Debian's chromium, driven by the Playwright Python package
# (`executable_path=/usr/bin/chromium`). Playwright's own browser download cannot work here.
# Idempotent: installs only when /usr/bin/chromium is missing.
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq chromium >/dev/null
fi
/usr/bin/chromium --version 2>/dev/null | head -n 1
