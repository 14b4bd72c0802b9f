#!/bin/sh
# Set-up for the end-to-end browser test (tests/test_browser_label.py): a system Chromium
# driven by Playwright.  Idempotent; run from the repository root (the Makefile's test set-up
# calls it).  Playwright's own browser download (`playwright install`) is NOT used: the test
# drives /usr/bin/chromium through executable_path, so nothing is fetched outside the
# Debian and PyPI package registries.
set -e
VENV=${VENV:-.venv}
if [ ! -x /usr/bin/chromium ]; then
    SUDO=""
    if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO=sudo; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
if ! "$VENV/bin/python" -c "import playwright" 2>/dev/null; then
    "$VENV/bin/pip" install -q playwright
fi
