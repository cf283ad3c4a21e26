# Shared by tools/gpu_check.sh and tools/gpu_train.sh (sourced, not run): options, the time budget, step
# banners/limits/records, the Python to use and the offline install of the carried wheels.
#
# A caller sets KIND (check|train), DEFAULT_BUDGET (seconds) and USAGE, sources this file with its arguments,
# then calls `run_step NAME LIMIT_SECONDS FUNCTION` for each step and `finish` at the end.
# Every step runs as `timeout LIMIT bash -c FUNCTION` with the whole script's remaining time as a further cap; its
# output goes to the terminal and to OUTDIR/<KIND>.log; its exit status, duration and limit are recorded and the
# report (tools/gpu_report.py) is rewritten after every step, so a run cut short still leaves one.
# A step that decides not to run writes its reason to "$WORK/skip.<NAME>" and exits 0 (recorded as skipped).

set -euo pipefail
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY_RUN=0
OUTDIR=""
BUDGET=""
EXTRA_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-dry-run) DRY_RUN=1 ;;
    --budget) BUDGET="$2"; shift ;;
    --budget=*) BUDGET="${1#--budget=}" ;;
    -h|--help) echo "$USAGE"; exit 0 ;;
    -*) echo "unknown option $1" >&2; echo "$USAGE" >&2; exit 2 ;;
    *) if [ -z "$OUTDIR" ]; then OUTDIR="$1"; else EXTRA_ARGS+=("$1"); fi ;;
  esac
  shift
done
[ -n "$OUTDIR" ] || { echo "$USAGE" >&2; exit 2; }
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
BUDGET="${BUDGET:-$DEFAULT_BUDGET}"
START=$(date +%s)
DEADLINE=$((START + BUDGET))
RESERVE=8      # seconds kept for the last report
MIN_STEP=5     # a step with less time left than this is skipped
WORK="$(mktemp -d "${TMPDIR:-/tmp}/posecnn_gpu_${KIND}.XXXXXX")"
LOG="$OUTDIR/gpu_${KIND}.log"
: > "$LOG"
CARRY="${POSECNN_GPU_CARRY:-$ROOT/.gpu_carry}"
SITE="$WORK/site"
[ "$DRY_RUN" = 1 ] && touch "$WORK/DRY_RUN"

# The Python holding the CUDA build of PyTorch: $POSECNN_GPU_PYTHON, the image's /opt/torch venv, else python3.
if [ -n "${POSECNN_GPU_PYTHON:-}" ]; then PY="$POSECNN_GPU_PYTHON"
elif [ "$DRY_RUN" = 0 ] && [ -x /opt/torch/.venv/bin/python3 ]; then PY=/opt/torch/.venv/bin/python3
else PY="$(command -v python3)"; fi
export PATH="$(dirname "$PY"):$PATH"   # ninja, pip scripts of that environment
export PY ROOT WORK SITE CARRY OUTDIR DRY_RUN LOG
export PYTHONPATH="$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}"

banner() { printf '\n==== [%s +%ss] %s ====\n' "$(date +%H:%M:%S)" "$(( $(date +%s) - START ))" "$*" | tee -a "$LOG"; }
say() { printf '%s\n' "$*" | tee -a "$LOG"; }
render() { "$PY" "$ROOT/tools/gpu_report.py" render --work "$WORK" --out "$OUTDIR" --kind "$KIND" >/dev/null 2>&1 || true; }

# run_step NAME LIMIT FUNCTION: the function (exported) runs in its own bash with `set -euo pipefail`.
run_step() {
  local name="$1" cap="$2" fn="$3"
  local left=$(( DEADLINE - $(date +%s) - RESERVE ))
  local limit=$cap
  [ "$left" -lt "$limit" ] && limit=$left
  banner "$name (limit ${limit} s)"
  if [ "$limit" -lt "$MIN_STEP" ]; then
    say "SKIP $name: out of time (budget ${BUDGET} s)"
    "$PY" "$ROOT/tools/gpu_report.py" step --work "$WORK" --name "$name" --rc 0 --seconds 0 \
        --timeout "$limit" --status "skipped: out of time"
    render
    return 0
  fi
  local t0 rc=0 status=""
  export STEP_LIMIT="$limit"
  t0=$(date +%s.%N)
  timeout --kill-after=10 "$limit" bash -c "set -euo pipefail; $fn" 2>&1 | tee -a "$LOG" || rc=${PIPESTATUS[0]}
  local secs
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  if [ -f "$WORK/skip.$name" ]; then status="skipped: $(head -c 300 "$WORK/skip.$name")"; fi
  "$PY" "$ROOT/tools/gpu_report.py" step --work "$WORK" --name "$name" --rc "$rc" --seconds "$secs" \
      --timeout "$limit" ${status:+--status "$status"}
  if [ -z "$status" ]; then
    if [ "$rc" = 0 ]; then status=ok
    elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then status="timeout after ${limit} s"
    else status="failed (exit $rc)"; fi
  fi
  say "---- $name: $status (${secs} s)"
  render
  return 0
}

skip() {  # inside a step: skip NAME REASON
  printf '%s' "$2" > "$WORK/skip.$1"
  echo "SKIP $1: $2"
}
export -f skip

# Step: machine facts -> $WORK/machine.json
step_machine() {
  "$PY" - <<'PYEOF'
import json, os, platform, shutil, subprocess, sys
def run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unavailable ({type(exc).__name__})"
info = {"python": sys.executable + " " + platform.python_version(), "platform": platform.platform(),
        "cpu_count": os.cpu_count(), "dry_run": os.environ.get("DRY_RUN") == "1"}
try:
    import torch
    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.version.cuda
    info["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, capability=f"{p.major}.{p.minor}", sm_count=p.multi_processor_count,
                    gpu_memory_gb=round(p.total_memory / 2**30, 1), cudnn=torch.backends.cudnn.version())
except Exception as exc:  # noqa: BLE001
    info["torch"] = f"import failed: {exc}"
for tool, args in (("nvidia-smi", ["--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm",
                                   "--format=csv,noheader"]),
                   ("nvcc", ["--version"]), ("compute-sanitizer", ["--version"]), ("ncu", ["--version"])):
    path = shutil.which(tool)
    out = run([path] + args) if path else "not found"
    info[tool] = out.splitlines()[-1] if tool != "nvidia-smi" else out
work = os.environ["WORK"]
json.dump(info, open(os.path.join(work, "machine.json"), "w"), indent=1)
for k, v in info.items():
    print(f"{k:>18}: {v}")
PYEOF
}
export -f step_machine

# Step: the carried wheels (tools/gpu_wheels.txt, fetched by tools/fetch_gpu_carry.sh) and this package, offline,
# into $SITE; then import checks from outside the source tree.
step_install() {
  local wheels=()
  if [ -d "$CARRY/wheels" ]; then mapfile -t wheels < <(ls "$CARRY"/wheels/*.whl 2>/dev/null || true); fi
  echo "carried wheels: ${#wheels[@]} in $CARRY/wheels"
  local pinned missing=()
  pinned=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$ROOT/tools/gpu_wheels.txt" | grep -v '^$' || true)
  for req in $pinned; do
    local name="${req%%==*}"
    "$PY" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('$name') else 1)" 2>/dev/null && continue
    local norm
    norm=$(echo "$name" | tr 'A-Z-' 'a-z_')
    ls "$CARRY"/wheels/ 2>/dev/null | tr 'A-Z-' 'a-z_' | grep -q "^${norm}-" || missing+=("$req")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "WARNING: neither installed nor carried: ${missing[*]} (run tools/fetch_gpu_carry.sh where there is network)"
  fi
  # build from a copy: setuptools writes build/ and *.egg-info next to the sources
  local src="$WORK/src"
  mkdir -p "$src"
  cp -r "$ROOT"/setup.py "$ROOT"/setup.cfg "$ROOT"/posecnn_core "$ROOT"/posecnn_ros "$ROOT"/config \
      "$ROOT"/cuda_ops "$ROOT"/launch "$src"/
  mkdir -p "$src/data"  # the bundled data only (not data/synthetic or datasets a checkout may hold)
  for d in models objects bags; do [ -d "$ROOT/data/$d" ] && cp -r "$ROOT/data/$d" "$src/data/"; done
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$SITE" \
      "${wheels[@]}" "$src"
  cd "$WORK"
  PYTHONPATH="$SITE" "$PY" -c "import posecnn_core, posecnn_core.estimator as e; print('posecnn_core', posecnn_core.__file__)"
  for mod in trimesh pyrender OpenGL; do
    PYTHONPATH="$SITE" "$PY" -c "import $mod; print('$mod', getattr($mod, '__version__', ''), $mod.__file__)" \
      2>/dev/null || echo "module $mod: not importable"
  done
  [ ${#missing[@]} -eq 0 ] || [ "$DRY_RUN" = 1 ]
}
export -f step_install

finish() {
  touch "$WORK/COMPLETE"
  render
  banner "done in $(( $(date +%s) - START )) s; report: $OUTDIR"
  local stem=gpu_report
  [ "$KIND" = train ] && stem=train_report
  cat "$OUTDIR/$stem.md" | tee -a "$LOG" >/dev/null
  cat "$OUTDIR/$stem.md"
}
trap 'render' EXIT
