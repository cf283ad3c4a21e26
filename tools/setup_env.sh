#!/usr/bin/env bash
# Build the dev/CI environment in .venv: pinned Python packages, ROS 2 Kilted wheels (rclpy), stand-in interface
# packages (vision_msgs, tf2_msgs) and this package built with colcon. Idempotent: each step is skipped when its
# inputs have not changed since it last succeeded. For machines WITHOUT a ROS distro only; on a real ROS 2 install
# build with colcon in a workspace instead (see README).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
V="${POSECNN_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMPS="$V/.posecnn-stamps"
log() { printf '[setup_env] %s\n' "$*"; }

hash_of() { (cd "$ROOT" && find "$@" -type f ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16; }
done_with() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
mark() { mkdir -p "$STAMPS"; echo "$2" > "$STAMPS/$1"; }

# 0. system packages (root only, only when missing)
need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)
command -v g++ >/dev/null || need_apt+=(g++)
ldconfig -p 2>/dev/null | grep -q libOSMesa || need_apt+=(libosmesa6)   # CPU OpenGL for the synthetic renderer
"$PY" -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing system packages: ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "${need_apt[@]}";
  else log "need root for apt-get install ${need_apt[*]}"; exit 1; fi
fi

# 1. venv
if [ ! -x "$V/bin/python" ]; then
  log "creating $V"
  "$PY" -m venv "$V"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1

# 2. Python packages
req_hash=$(hash_of tools/requirements-dev.txt tools/requirements-ros.txt tools/requirements-render.txt)
if ! done_with pip "$req_hash"; then
  log "installing Python packages (torch CPU, ROS 2 wheels, colcon, ...)"
  "$V/bin/python" -m pip install -q -r "$ROOT/tools/requirements-dev.txt" -r "$ROOT/tools/requirements-ros.txt"
  "$V/bin/python" -m pip install -q -r "$ROOT/tools/requirements-render.txt"
  "$V/bin/python" -m pip install -q --no-deps PyOpenGL==3.1.10   # over pyrender's broken 3.1.0 pin (see file)
  rm -f "$STAMPS/cmake-fix" "$STAMPS/standins" "$STAMPS/package"
  mark pip "$req_hash"
fi

# 3. the manylinux wheels' CMake files point at the wheel builder's Python: point them at this venv
if ! done_with cmake-fix "$req_hash"; then
  log "fixing Python paths in the ROS wheels' CMake files"
  "$V/bin/python" "$ROOT/tools/fix_ros_cmake_paths.py" "$V"
  mark cmake-fix "$req_hash"
fi

export AMENT_PREFIX_PATH="$V" CMAKE_PREFIX_PATH="$V"
colcon_build() {  # colcon_build <build base> <paths...>
  local base="$1"; shift
  (cd "$ROOT" && "$V/bin/colcon" --log-base "$base/log" build --merge-install --install-base "$V" \
     --build-base "$base" "$@" \
     --cmake-args -DPython3_EXECUTABLE="$V/bin/python" -DBUILD_TESTING=OFF -Wno-dev \
     --event-handlers console_cohesion- status- summary+ )
}

# 4. stand-in vision_msgs and tf2_msgs (dev/CI only)
standin_hash=$(hash_of tools/ros_standins)
if ! done_with standins "$standin_hash-$req_hash"; then
  log "building stand-in interface packages vision_msgs, tf2_msgs"
  # tools/ros_standins carries COLCON_IGNORE so that a ROS workspace never picks the stand-ins up: build copies.
  rm -rf "$V/.build/standins-src" && mkdir -p "$V/.build/standins-src"
  cp -r "$ROOT/tools/ros_standins/vision_msgs" "$ROOT/tools/ros_standins/tf2_msgs" "$V/.build/standins-src/"
  colcon_build "$V/.build/standins" --base-paths "$V/.build/standins-src"
  rm -f "$STAMPS/package"
  mark standins "$standin_hash-$req_hash"
fi

# 5. this package
pkg_hash=$(hash_of package.xml CMakeLists.txt setup.cfg msg posecnn_core posecnn_ros launch config cuda_ops scripts $( [ -d "$ROOT/data" ] && echo data ))
if ! done_with package "$pkg_hash"; then
  log "building posecnn_ros with colcon"
  colcon_build "$V/.build/posecnn_ros" --paths "$ROOT"
  mark package "$pkg_hash"
fi

# 6. the console scripts of setup.cfg (posecnn-train, posecnn-eval, ...): the colcon build installs them to $V/bin
scripts=$("$V/bin/python" - "$ROOT/setup.cfg" <<'PY'
import configparser, sys
cfg = configparser.ConfigParser()
cfg.read(sys.argv[1])
entries = cfg["options.entry_points"]["console_scripts"].splitlines()
print(" ".join(line.split("=")[0].strip() for line in entries if line.strip()))
PY
)
for s in $scripts; do
  [ -x "$V/bin/$s" ] || { log "console script $s is missing from $V/bin (see CMakeLists.txt)"; exit 1; }
done

log "environment ready: $V (activate with: source tools/env.sh)"
