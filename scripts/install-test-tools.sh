#!/usr/bin/env bash
# Best effort: the system tools some tests use, from Debian's packages.
#   chromium + chromium-driver  the search page's browser tests (driven by Playwright)
#   docker-compose              validates docker-compose.yml (`docker-compose config`)
# Tests that need a tool that could not be installed skip and print why; this script never fails
# the run. Set MODALFUSE_SKIP_SYSTEM_TOOLS=1 to leave the system alone.
set -uo pipefail

wanted=()
command -v chromium >/dev/null 2>&1 || wanted+=(chromium)
command -v chromedriver >/dev/null 2>&1 || wanted+=(chromium-driver)
command -v docker-compose >/dev/null 2>&1 || wanted+=(docker-compose)

if [ ${#wanted[@]} -eq 0 ]; then
    exit 0
fi
if [ "${MODALFUSE_SKIP_SYSTEM_TOOLS:-0}" = "1" ]; then
    echo "install-test-tools: not installing ${wanted[*]} (MODALFUSE_SKIP_SYSTEM_TOOLS=1)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-tools: no apt-get here; tests needing ${wanted[*]} will skip" >&2
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo="sudo -n"
    else
        echo "install-test-tools: not root and no passwordless sudo; tests needing ${wanted[*]} will skip" >&2
        exit 0
    fi
fi
echo "install-test-tools: installing ${wanted[*]} from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
if ! $sudo apt-get install -y -q --no-install-recommends "${wanted[@]}" >/dev/null 2>&1; then
    # The package lists may be missing or stale on a fresh machine.
    $sudo apt-get update -q >/dev/null 2>&1 || true
    $sudo apt-get install -y -q --no-install-recommends "${wanted[@]}" >/dev/null 2>&1 \
        || echo "install-test-tools: could not install ${wanted[*]}; those tests will skip" >&2
fi
exit 0
