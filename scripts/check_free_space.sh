#!/usr/bin/env bash
# Refuse to start an install that cannot fit: `make setup` puts torch 2.14.1 (a CUDA build,
# the only one pip takes from this machine's disk with torchvision) and its NVIDIA libraries
# into .venv. Measured on a fresh 2-core x86_64 machine (2026-12-04): .venv 7.8 GB, disk use
# 8.3 GB at its peak. Without this check a short disk fails 80 s in with pip's
# "OSError: [Errno 28] No space left on device" and a half-built .venv.
#
#   check_free_space.sh NEED_GB DIR     exit 1 with a clear message when DIR has less free
#   NEED_GB=0 skips the check (make setup SETUP_FREE_GB=0).
set -euo pipefail
need_gb=${1:?usage: check_free_space.sh NEED_GB DIR}
dir=${2:-.}
avail_kb=$(df -Pk "$dir" | awk 'NR==2 {print $4}')
need_kb=$(awk -v g="$need_gb" 'BEGIN {printf "%d", g * 1024 * 1024}')
if (( avail_kb < need_kb )); then
    avail_gb=$(awk -v k="$avail_kb" 'BEGIN {printf "%.1f", k / 1024 / 1024}')
    echo "blinkbench setup: $(cd "$dir" && pwd) has ${avail_gb} GB free; installing .venv needs" \
         "about ${need_gb} GB (torch with its CUDA libraries: 7.8 GB installed, 8.3 GB at the peak)." >&2
    echo "Free some space, or run 'make setup SETUP_FREE_GB=0' to try anyway." >&2
    exit 1
fi
