#!/usr/bin/env bash
# Install Debian's Chromium for the dashboard's browser test (tests/dashboard/test_browser.py),
# which drives it headless through Playwright. Playwright's own browser download is never used.
# Exit status 2: this machine cannot install it (not root, or no apt-get); the test then skips
# and says why.
set -euo pipefail
if command -v chromium >/dev/null; then exit 0; fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "install-chromium: not root or no apt-get; the browser test will skip" >&2
    exit 2
fi
echo "install-chromium: installing chromium (apt-get)"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq chromium >/dev/null; then
    apt-get update -qq >/dev/null
    apt-get install -y -qq chromium >/dev/null
fi
