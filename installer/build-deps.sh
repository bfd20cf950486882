#!/usr/bin/env bash
# The Debian packages the installer targets need beyond scripts/system-deps.sh: msitools' wixl
# (builds the MSI) and binutils (PyInstaller reads shared libraries with objdump). Only when
# missing; uses sudo when not root.
set -euo pipefail
missing=()
command -v wixl >/dev/null || missing+=(wixl)
command -v msiinfo >/dev/null || missing+=(msitools)
command -v objdump >/dev/null || missing+=(binutils)
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "Need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "Installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
