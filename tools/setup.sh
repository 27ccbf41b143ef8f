#!/usr/bin/env bash
# tools/setup.sh - installs the Debian 12 packages that building and testing corehub need.
#
# Installs only what is missing (dpkg-query decides), so a second run changes nothing and
# touches no network. Works as root (CI, containers) and through sudo otherwise. Never
# prompts: DEBIAN_FRONTEND=noninteractive and apt-get -y.
set -euo pipefail

packages=(
    build-essential gcc cmake pkg-config git
    liburing-dev libxxhash-dev libzstd-dev libsodium-dev libcriterion-dev
    clang clang-format
    curl
    redis-tools
    iptables
)

is_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: this script needs a Debian-like system (dpkg-query, apt-get)" >&2
    exit 1
fi

missing=()
for p in "${packages[@]}"; do
    is_installed "$p" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: all ${#packages[@]} packages already installed"
    exit 0
fi

# Root runs apt-get directly; anyone else goes through sudo (non-interactive when there
# is no terminal, so CI fails fast instead of hanging on a password prompt).
as_root=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "setup: missing ${missing[*]}; run as root or install sudo" >&2
        exit 1
    fi
    as_root=(sudo)
    [ -t 0 ] || as_root+=(-n)
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    --no-install-recommends "${missing[@]}"
echo "setup: done"
