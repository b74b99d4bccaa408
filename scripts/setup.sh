#!/usr/bin/env bash
# Installs the system packages cxrlens needs on Debian/Ubuntu, only those missing (no-op when all are
# present). Build: cmake and a C++ compiler (CharLS, the JPEG-LS codec). Run and test: a Vulkan loader
# and Mesa's software Vulkan (lavapipe) so wgpu has an adapter on machines without a GPU, and the
# X11/EGL libraries winit and glow load at run time. Xvfb and xauth for headless screenshots. DCMTK
# (tests read exported Secondary Captures with dcmdump and dcm2pnm); Orthanc with its DICOMweb plugin
# (tests start one on 127.0.0.1 for the PACS round trip; the package's own service is not used).
set -euo pipefail
packages=(cmake nasm g++ pkg-config libvulkan1 mesa-vulkan-drivers libegl1 libgl1-mesa-dri
  libxkbcommon-x11-0 libxcursor1 libxi6 libxrandr2 xvfb xauth dcmtk
  orthanc orthanc-dicomweb)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=(); [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# wgpu warns without a runtime dir (common under Xvfb, CI and containers).
if [[ -z "${XDG_RUNTIME_DIR:-}" || ! -d "${XDG_RUNTIME_DIR:-/nonexistent}" ]]; then
  export XDG_RUNTIME_DIR=/tmp/xdg-runtime-$(id -u)
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi
