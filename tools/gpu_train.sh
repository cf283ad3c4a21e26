#!/usr/bin/env bash
# Train the demo model on a bare GPU machine in a fixed number of minutes (docs/gpu.md): install offline, render
# synthetic scenes of the demo objects (pyrender through EGL on the GPU; 16 processes), train
# config/train/demo.yaml (half-width trunk, 256-wide RoI heads, 320x240, AMP) with its whole learning-rate schedule
# squeezed into MINUTES, export the checkpoint (float16, <= 16 MB) and evaluate it (posecnn-eval) on the rendered
# test split, and compare bf16 with fp32 inference on the same frames. Results in OUTDIR:
#   train_report.md, train_report.json, gpu_train.log, demo_gpu.pt, eval_report.md, per_object.csv, accuracy.png
#   tools/gpu_train.sh OUTDIR [MINUTES] [--budget SECONDS]     # MINUTES of training (default 4)
#   tools/gpu_train.sh OUTDIR --cpu-dry-run                     # the same steps on the CPU, tiny sizes, OSMesa
# Data: rendered on the machine (EGL needs the glvnd .deb files from tools/fetch_gpu_carry.sh) with the scene options
# of config/train/demo.yaml's header, plus $POSECNN_SYNTH_ARGS (e.g. "--fx-range 250,600 --distractors 0,6"); when
# EGL does not work there, .gpu_carry/demo_synth.tar (tools/fetch_gpu_carry.sh --dataset N) is used.
KIND=train
USAGE="usage: tools/gpu_train.sh OUTDIR [MINUTES] [--cpu-dry-run] [--budget SECONDS]"
DEFAULT_BUDGET=0
# shellcheck source=tools/gpu_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/gpu_common.sh"
MINUTES="${EXTRA_ARGS[0]:-4}"
[ "$DRY_RUN" = 1 ] && MINUTES="${EXTRA_ARGS[0]:-0.15}"
if [ "$BUDGET" = 0 ]; then  # training minutes + everything around them
  BUDGET=$(awk -v m="$MINUTES" -v d="$DRY_RUN" 'BEGIN{printf "%d", m * 60 + (d == 1 ? 400 : 300)}')
  DEADLINE=$((START + BUDGET))
fi
RENDER_SECONDS="${POSECNN_RENDER_SECONDS:-75}"
export MINUTES RENDER_SECONDS
CONFIG="$ROOT/config/train/demo.yaml"
OBJECTS="$ROOT/config/objects/demo.yaml"
export CONFIG OBJECTS
if [ "$DRY_RUN" = 1 ]; then
  # the demo config made tiny for a CPU: same steps, seconds instead of minutes
  TRAIN_SETS=(--set device=cpu --set amp=false --set workers=0 --set batch_size=2 --set "input_size=[96,128]"
              --set trunk_width=0.125 --set fc_dim=16 --set epochs=2 --set lr_milestones=[1])
  EVAL_DEVICE=cpu
else
  TRAIN_SETS=(--set device=cuda --set "workers=$(( $(nproc) > 4 ? $(nproc) - 4 : 1 ))")
  EVAL_DEVICE=cuda
fi
export TRAIN_SETS_STR="${TRAIN_SETS[*]}" EVAL_DEVICE

# Step: headless OpenGL. EGL through the NVIDIA driver with the carried glvnd libraries (unpacked into /, as the
# machine's notes advise for these packages); the dry run renders with OSMesa instead and changes nothing.
step_gl() {
  if [ "$DRY_RUN" = 1 ]; then skip gl "CPU dry run: rendering with OSMesa, nothing to unpack"; return 0; fi
  local n=0
  for f in "$CARRY"/debs/*.deb; do [ -f "$f" ] && dpkg -x "$f" / && n=$((n + 1)); done
  ldconfig || true
  echo "unpacked $n .deb file(s) from $CARRY/debs"
  ls /usr/local/nvidia/share/glvnd/egl_vendor.d/ 2>/dev/null || true
  ldconfig -p | grep -E "libEGL|libOpenGL" || echo "no libEGL/libOpenGL found"
}
export -f step_gl

gl_env() {
  if [ "$DRY_RUN" = 1 ]; then export PYOPENGL_PLATFORM=osmesa; return 0; fi
  export PYOPENGL_PLATFORM=egl
  local vendor=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  [ -f "$vendor" ] && export __EGL_VENDOR_LIBRARY_FILENAMES="${__EGL_VENDOR_LIBRARY_FILENAMES:-$vendor}"
  [ -d /usr/local/nvidia/lib64 ] && export LD_LIBRARY_PATH="/usr/local/nvidia/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  return 0
}
export -f gl_env

# Step: data. A 4-frame smoke render first; then chunks until RENDER_SECONDS are spent (or 20000 frames). If
# rendering fails here, the carried pre-rendered dataset is unpacked instead.
step_render() {
  gl_env
  local platform=egl workers size=320x240 seconds="$RENDER_SECONDS" maxf=20000
  workers=$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))
  if [ "$DRY_RUN" = 1 ]; then platform=osmesa; workers=1; size=128x96; seconds=20; maxf=8; fi
  local smoke_ok=1
  timeout 120 "$PY" -m posecnn_core.synth --objects "$OBJECTS" --out "$WORK/smoke" --frames 2 --width 64 \
      --height 48 --platform "$platform" --no-progress || smoke_ok=0
  if [ "$smoke_ok" = 1 ]; then
    "$PY" "$ROOT/tools/gpu_train_run.py" render --objects "$OBJECTS" --out "$WORK/data" --seconds "$seconds" \
        --workers "$workers" --platform "$platform" --size "$size" --max-frames "$maxf" \
        --synth-args="${POSECNN_SYNTH_ARGS:-}" \
        $( [ "$DRY_RUN" = 1 ] && echo "--first-chunk 8 --min-chunk 4 --startup-s 5" ) && return 0
  fi
  echo "rendering with $platform failed; looking for a carried dataset"
  if [ -f "$CARRY/demo_synth.tar" ]; then
    mkdir -p "$WORK/data/chunk00"
    tar -xf "$CARRY/demo_synth.tar" -C "$WORK/data/chunk00"
    "$PY" - <<'PYEOF'
import json, os
from pathlib import Path
root = Path(os.environ["WORK"]) / "data" / "chunk00"
n = sum(len([l for l in (root / "image_sets" / f"{s}.txt").read_text().split() if l]) for s in ("train", "test"))
info = {"roots": [str(root)], "test_root": str(root), "frames": n, "seconds": 0.0, "platform": "carried dataset"}
(root.parent / "data.json").write_text(json.dumps(info, indent=1))
print(json.dumps(info))
PYEOF
    return 0
  fi
  echo "no carried dataset ($CARRY/demo_synth.tar); nothing to train on" >&2
  return 1
}
export -f step_render

need_data() { [ -f "$WORK/data/data.json" ] || { skip "$1" "no training data (render step failed)"; return 1; }; }
export -f need_data

# Step: speed probe (150 iterations into a scratch folder; 6 in the dry run).
step_probe() {
  need_data probe || return 0
  local iters=150
  [ "$DRY_RUN" = 1 ] && iters=4
  # shellcheck disable=SC2086
  "$PY" "$ROOT/tools/gpu_train_run.py" probe --config "$CONFIG" --data "$WORK/data/data.json" --out "$WORK" \
      --iters "$iters" $TRAIN_SETS_STR
}
export -f step_probe

# Step: training for MINUTES with the schedule sized from the probe.
step_train() {
  need_data train || return 0
  [ -f "$WORK/probe.json" ] && grep -q iters_per_s "$WORK/probe.json" || { skip train "no speed probe"; return 0; }
  # shellcheck disable=SC2086
  "$PY" "$ROOT/tools/gpu_train_run.py" train --config "$CONFIG" --data "$WORK/data/data.json" --out "$WORK" \
      --minutes "$MINUTES" --probe "$WORK/probe.json" $TRAIN_SETS_STR
}
export -f step_train

# Step: export the last checkpoint (float16 weights + metadata) into OUTDIR; it must stay <= 16 MB.
step_export() {
  local src="$WORK/run/checkpoints/latest.pt"
  [ -f "$src" ] || { skip export "no checkpoint (training did not run)"; return 0; }
  "$PY" -m posecnn_core.train.export "$src" "$OUTDIR/demo_gpu.pt"
  local size
  size=$(stat -c %s "$OUTDIR/demo_gpu.pt")
  echo "demo_gpu.pt: $size bytes"
  [ "$size" -le $((16 * 1024 * 1024)) ] || { echo "exported checkpoint is larger than 16 MB" >&2; return 1; }
}
export -f step_export

# Step: posecnn-eval on the rendered test split (PT's YCB-Video evaluation preset).
step_eval() {
  [ -f "$OUTDIR/demo_gpu.pt" ] || { skip eval "no exported checkpoint"; return 0; }
  local test_root
  test_root=$("$PY" -c "import json; print(json.load(open('$WORK/data/data.json'))['test_root'])")
  "$PY" -m posecnn_core.evaluate --checkpoint "$OUTDIR/demo_gpu.pt" --objects "$OBJECTS" --dataset "$test_root" \
      --split test --out "$WORK/eval" --device "$EVAL_DEVICE" --no-progress --title "demo model trained on the GPU"
  cp "$WORK/eval/report.md" "$OUTDIR/eval_report.md"
  cp "$WORK/eval/per_object.csv" "$OUTDIR/per_object.csv"
  [ -f "$WORK/eval/accuracy.png" ] && cp "$WORK/eval/accuracy.png" "$OUTDIR/accuracy.png"
  return 0
}
export -f step_eval

# Step: bf16 / CUDA-graph inference against fp32 with the trained weights on the same test frames.
step_precision() {
  [ -f "$OUTDIR/demo_gpu.pt" ] || { skip precision "no exported checkpoint"; return 0; }
  local test_root
  test_root=$("$PY" -c "import json; print(json.load(open('$WORK/data/data.json'))['test_root'])")
  "$PY" "$ROOT/bench/compare_precision.py" --checkpoint "$OUTDIR/demo_gpu.pt" --objects "$OBJECTS" \
      --dataset "$test_root" --split test --out "$WORK/precision.json" --device "$EVAL_DEVICE" \
      --variants fp32 bf16 graph_bf16
}
export -f step_precision

say "training minutes: $MINUTES; whole budget: $BUDGET s"
run_step machine 30 step_machine
run_step install 90 step_install
run_step gl 30 step_gl
run_step render $((RENDER_SECONDS + 90)) step_render
run_step probe 150 step_probe
run_step train "$(awk -v m="$MINUTES" 'BEGIN{printf "%d", m * 60 * 1.25 + 120}')" step_train
run_step export 60 step_export
run_step eval 120 step_eval
run_step precision 120 step_precision
finish
