#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages the suite and the demo need, only when missing.
# Uses sudo when not root. Safe to run repeatedly.
set -euo pipefail

# Qt (PySide6) needs EGL/xkbcommon/fontconfig even offscreen; Xvfb runs real windows for
# screenshots; DejaVu fonts cover Vietnamese in the PDF passports; msitools builds the MSI;
# nginx and systemd-analyze check deploy/ in its tests; pdfsig, pdftotext (poppler-utils) and
# certutil (libnss3-tools) check the PDF passports as Poppler-based readers see them.
packages=(softhsm2 opensc openssl chromium xvfb xauth libegl1 libgl1 libxkbcommon0
  libxkbcommon-x11-0 libxcb-cursor0 libdbus-1-3 libfontconfig1 fonts-dejavu-core msitools
  libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-shape0 libxcb-xkb1
  libxcb-randr0 libxcb-xinerama0 nginx-light systemd poppler-utils libnss3-tools)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A fresh Debian/Ubuntu Python lacks venv (and pip) until python3-venv is installed.
python3 -c "import ensurepip, venv" 2>/dev/null || missing+=(python3-venv)
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "Need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "Installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
