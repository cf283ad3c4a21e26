#!/usr/bin/env bash
# The GPU check, one command for a bare GPU machine (docs/gpu.md): install offline, build the operators for the
# GPU, run the CUDA tests, benchmark the estimator, check data-parallel training (NCCL on several GPUs, CUDA == CPU
# on one), compute-sanitizer (memcheck, racecheck); results in OUTDIR:
#   gpu_report.md, gpu_report.json (machine, driver, torch, every step's status and time, every figure), gpu_check.log
# The whole run keeps to --budget seconds (default 470, under 8 minutes): every step has a limit, later steps are
# skipped when time runs out, and the report is rewritten after each step.
#   tools/gpu_check.sh OUTDIR [--budget SECONDS]
#   tools/gpu_check.sh OUTDIR --cpu-dry-run       # every step that needs no GPU, tiny sizes (the test suite runs it)
KIND=check
DEFAULT_BUDGET=470
USAGE="usage: tools/gpu_check.sh OUTDIR [--cpu-dry-run] [--budget SECONDS]"
# shellcheck source=tools/gpu_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/gpu_common.sh"
if [ "$DRY_RUN" = 0 ]; then
  export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"   # H100/H200; part of the build's fingerprint
  export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
fi

# Step: build the operator library (CUDA kernels for TORCH_CUDA_ARCH_LIST) -> $WORK/build.json
step_build() {
  "$PY" - <<'PYEOF'
import json, os, sys, time
import torch
from posecnn_core.ops import extension
t = time.perf_counter()
ok = extension.load_ops(verbose=True)
secs = time.perf_counter() - t
ops = extension.list_ops() if ok else {}
info = {"seconds": round(secs, 1), "loaded": ok, "error": extension.load_error(), "library": str(extension.library_path()),
        "arch_list": os.environ.get("TORCH_CUDA_ARCH_LIST"), "ops": {k: ", ".join(v) for k, v in ops.items()}}
json.dump(info, open(os.path.join(os.environ["WORK"], "build.json"), "w"), indent=1)
print(f"build/load: {secs:.1f} s; library {info['library']}")
for name, kernels in info["ops"].items():
    print(f"  posecnn::{name:<24} kernels: {kernels}")
if not ok:
    print(f"FAILED: {info['error']}", file=sys.stderr)
    sys.exit(1)
if os.environ.get("DRY_RUN") != "1" and not all("cuda" in v for v in ops.values()):
    print("FAILED: no CUDA kernels were built", file=sys.stderr)
    sys.exit(1)
PYEOF
}
export -f step_build

# Step: the CUDA tests (every test with cuda/gpu in its name or file): voting and RoI pooling CUDA == CPU in every
# mode, the estimator on CUDA (graph, bf16, synchronisations, CUDA == CPU poses).
step_tests() {
  cd "$ROOT"
  "$PY" -m pytest -q -p no:cacheprovider --timeout=150 -rs --junitxml="$WORK/tests.xml" -k "cuda or gpu" \
      test/test_voting_ops.py test/test_roi_pool_ops.py test/test_refine_ops.py test/test_estimator.py \
      test/test_estimator_gpu.py
}
export -f step_tests

# Steps: compute-sanitizer on tools/gpu_sanitize_ops.py (every kernel once, CUDA == CPU checked).
sanitize() {  # sanitize TOOL
  local tool="$1"
  if [ "$DRY_RUN" = 1 ]; then skip "$tool" "needs CUDA (CPU dry run)"; return 0; fi
  command -v compute-sanitizer >/dev/null || { skip "$tool" "compute-sanitizer not found"; return 0; }
  local rc=0
  ( [ "$tool" = memcheck ] && export PYTORCH_NO_CUDA_MEMORY_CACHING=1
    compute-sanitizer --tool "$tool" --error-exitcode 99 --print-limit 20 \
        "$PY" "$ROOT/tools/gpu_sanitize_ops.py" ) > "$WORK/$tool.log" 2>&1 || rc=$?
  cat "$WORK/$tool.log"
  if [ "$rc" != 0 ] && grep -qiE "Device not supported|error 999|Failed to initialize|not supported on this" "$WORK/$tool.log" \
      && ! grep -q "ERROR SUMMARY: [1-9]" "$WORK/$tool.log"; then
    skip "$tool" "compute-sanitizer refused the device: $(grep -iE -m1 'not supported|error 999|Failed to initialize' "$WORK/$tool.log")"
    return 0
  fi
  return "$rc"
}
export -f sanitize
step_memcheck() { sanitize memcheck; }
step_racecheck() { sanitize racecheck; }
export -f step_memcheck step_racecheck

# Steps: the benchmark (bench/bench_gpu.py): fp32 / NCHW / bf16 / CUDA graph variants, voting alone, dense
# agreement; then synchronisations per frame (own process: the GPU trace stays on); then torch.compile variants.
bench_args() { if [ "$DRY_RUN" = 1 ]; then echo "--device cpu --tiny"; else echo "--device cuda"; fi; }
export -f bench_args
step_bench() {
  # the benchmark's own budget ends before this step's limit so that it can write what it has
  "$PY" "$ROOT/bench/bench_gpu.py" --out "$WORK/bench.json" $(bench_args) --budget "$(( STEP_LIMIT > 60 ? STEP_LIMIT - 40 : STEP_LIMIT / 2 ))"
}
step_syncs() { "$PY" "$ROOT/bench/bench_gpu.py" --out "$WORK/bench.json" $(bench_args) --sections syncs; }
step_compile() {  # the fastest configuration first: its number matters most if only one fits
  "$PY" "$ROOT/bench/bench_gpu.py" --out "$WORK/bench.json" $(bench_args) --sections variants \
      --variants compile_graph_bf16 compile --budget "$(( STEP_LIMIT > 60 ? STEP_LIMIT - 30 : STEP_LIMIT / 2 ))"
}
export -f step_bench step_syncs step_compile

# Step: data-parallel training equals one process (tools/gpu_ddp_check.py): with several GPUs torchrun/NCCL,
# 1 image per GPU, vs one GPU with the whole global batch; with one GPU, CUDA vs CPU; CPU dry run: gloo -> $WORK/ddp.json
step_ddp() {
  local dry=""
  if [ "$DRY_RUN" = 1 ]; then dry="--cpu-dry-run"; fi
  "$PY" "$ROOT/tools/gpu_ddp_check.py" --out "$WORK/ddp.json" $dry --timeout "$(( STEP_LIMIT / 2 ))"
}
export -f step_ddp

run_step machine 30 step_machine
run_step install 90 step_install
run_step build 300 step_build
run_step tests 180 step_tests
run_step bench 150 step_bench
run_step syncs 60 step_syncs
run_step ddp 120 step_ddp
run_step memcheck 100 step_memcheck
run_step racecheck 80 step_racecheck
run_step compile 240 step_compile
finish
