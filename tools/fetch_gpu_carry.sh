#!/usr/bin/env bash
# Fill .gpu_carry/ (git-ignored) with what the GPU runbooks need on a machine without network access:
#   .gpu_carry/wheels/  the wheels pinned in tools/gpu_wheels.txt (pure Python / manylinux x86-64)
#   .gpu_carry/debs/    libEGL/libOpenGL (glvnd) .deb files for headless rendering through the NVIDIA driver
#   .gpu_carry/demo_synth.tar   with --dataset N: N synthetic demo frames rendered here (OSMesa), the fallback of
#                       tools/gpu_train.sh when EGL rendering fails on the GPU machine (~140 kB per frame)
# Run it once on a machine with network access, in the checkout that travels to the GPU machine; then copy or
# carry .gpu_carry along (docs/gpu.md). Idempotent; prints the folder's size at the end.
#   tools/fetch_gpu_carry.sh [--no-debs] [--dataset FRAMES]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/.gpu_carry"
PY="${PYTHON:-python3}"
log() { printf '[fetch_gpu_carry] %s\n' "$*"; }
DEBS=1
DATASET=0
while [ $# -gt 0 ]; do
  case "$1" in
    --no-debs) DEBS=0 ;;
    --dataset) DATASET="$2"; shift ;;
    *) echo "usage: tools/fetch_gpu_carry.sh [--no-debs] [--dataset FRAMES]" >&2; exit 2 ;;
  esac
  shift
done

mkdir -p "$OUT/wheels"
mapfile -t reqs < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$ROOT/tools/gpu_wheels.txt" | grep -v '^$')
log "wheels: ${reqs[*]}"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_12_x86_64 --platform manylinux1_x86_64 -d "$OUT/wheels" "${reqs[@]}"
# keep exactly the pinned versions (an older download of another version would make pip refuse the set)
for whl in "$OUT"/wheels/*.whl; do
  base="$(basename "$whl")"
  name="$(echo "${base%%-*}" | tr 'A-Z_' 'a-z-')"
  ver="$(echo "$base" | cut -d- -f2)"
  keep=0
  for r in "${reqs[@]}"; do
    rn="$(echo "${r%%==*}" | tr 'A-Z_' 'a-z-')"; rv="${r##*==}"
    [ "$rn" = "$name" ] && [ "$rv" = "$ver" ] && keep=1
  done
  [ "$keep" = 1 ] || { log "removing stale $base"; rm -f "$whl"; }
done

if [ "$DEBS" = 1 ]; then
  mkdir -p "$OUT/debs" /tmp/posecnn_apt_amd64/partial
  o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/posecnn_apt_amd64)
  log "EGL/OpenGL dispatch libraries (.deb, amd64)"
  apt-get "${o[@]}" update -qq
  (cd "$OUT/debs" && apt-get "${o[@]}" download libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null)
fi
if [ "$DATASET" -gt 0 ]; then
  tmp="$(mktemp -d)"
  log "rendering $DATASET demo frames (OSMesa, 320x240) for $OUT/demo_synth.tar"
  (cd "$ROOT" && "$PY" -m posecnn_core.synth --objects config/objects/demo.yaml --out "$tmp/demo" \
      --frames "$DATASET" --seed 101 --width 320 --height 240 --min-objects 2 --max-objects 6 \
      --depth-range 0.45,1.0 --test-fraction 0.1 --workers "$(nproc)" --no-progress)
  tar -cf "$OUT/demo_synth.tar" -C "$tmp/demo" .
  rm -rf "$tmp"
fi
log "contents:"
ls -la "$OUT"/wheels "$OUT"/debs 2>/dev/null | sed 's/^/  /'
log "total: $(du -sh "$OUT" | cut -f1) (the whole working tree that travels must stay under 64 MiB)"
