#!/usr/bin/env bash
# Install what the SLURM tests run (Debian's slurmctld, slurmd, slurm-client and munge) when it is missing. The
# tests start their own two-node cluster on loopback and stop it; nothing here starts a daemon. Needs root and apt.
set -uo pipefail
PACKAGES="slurmctld slurmd slurm-client munge"
have_all() { command -v slurmctld && command -v slurmd && command -v sbatch && command -v munged && command -v mungekey; } >/dev/null 2>&1
have_all && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install_slurm: not root on a Debian-like system: the SLURM tests will be skipped" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends $PACKAGES >/tmp/accelbench-install-slurm.log 2>&1 \
  || { apt-get update >>/tmp/accelbench-install-slurm.log 2>&1 \
       && apt-get install -y --no-install-recommends $PACKAGES >>/tmp/accelbench-install-slurm.log 2>&1; } \
  || { echo "install_slurm: apt-get failed (/tmp/accelbench-install-slurm.log): the SLURM tests will be skipped" >&2; exit 1; }
have_all
