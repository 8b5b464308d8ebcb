#!/usr/bin/env bash
# Installs every Debian 12 package that crackseg's build, tests, SLURM sweeps and plots need.
# Idempotent and quiet: packages already present are skipped; a held dpkg lock is waited on.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config git
  libopenmpi-dev openmpi-bin
  libhdf5-openmpi-dev hdf5-tools
  libdnnl-dev
  libtrilinos-kokkos-dev
  libopencv-imgcodecs-dev libopencv-imgproc-dev libopencv-core-dev
  libtoml11-dev nlohmann-json3-dev libcli11-dev
  libgtest-dev googletest
  slurmctld slurmd slurm-client munge
  python3-matplotlib
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
APT=(-o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0 -qq)
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get "${APT[@]}" update >/dev/null
$SUDO apt-get "${APT[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
