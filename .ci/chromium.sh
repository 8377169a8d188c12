#!/usr/bin/env bash
# Headless Chromium for the summary's rendered-height test
# (tests/summary_render.rs): Debian's `chromium` package, installed when
# missing. The test runs it only when it is on PATH, and under CI=true insists.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "chromium is missing: apt-get install chromium (as root)" >&2
  exit 1
fi
echo "installing Debian's chromium (headless summary rendering)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium fonts-noto-color-emoji fonts-dejavu-core >/dev/null
chromium --version
