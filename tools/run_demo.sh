#!/usr/bin/env bash
# The demo: build/refresh the environment, then replay the bundled bag into the PoseCNN node running the bundled
# demo checkpoint on CPU; prints per-frame errors vs ground truth and a summary, writes out/demo/summary.json,
# report.md (ADD/ADD-S AUC per object) and the overlays to out/demo.
# Extra arguments go to `python -m posecnn_ros.demo` (e.g. --rate 1.0, --depth, --device cuda).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
# shellcheck source=/dev/null
source "$ROOT/tools/env.sh"
cd "$ROOT"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
exec python -m posecnn_ros.demo --lockstep "$@"
