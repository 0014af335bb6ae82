#!/usr/bin/env bash
# A local S3 server (SeaweedFS) as the project's DVC remote, on 127.0.0.1 only.
#   export BLINKBENCH_S3_ACCESS_KEY_ID=... BLINKBENCH_S3_SECRET_ACCESS_KEY=...
#   scripts/s3_server.sh start       # data, log, pid under .s3/ (or --dir DIR); waits until healthy
#   scripts/s3_server.sh configure   # DVC remote local-s3 -> this server (.dvc/config.local)
#   scripts/s3_server.sh status      # exit 3 when not running
#   scripts/s3_server.sh stop
# Implementation: src/blinkbench/ops/s3_server.py (python -m blinkbench.ops.s3_server --help).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
exec "$PY" -m blinkbench.ops.s3_server "$@"
