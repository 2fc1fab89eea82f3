#!/usr/bin/env bash
# Release training on a lent GPU machine whose checkout cannot hold both classes at once.
#
# Here:   python -m train.pack --data ../shared/data/cell_images_64 --out .pack
#         git rev-parse HEAD > .pack/commit
#         pip download --no-deps -d .pack/wheels tqdm==4.70.1
# Call 1 (carry .pack/Parasitized.tar .pack/wheels .pack/commit):
#         bash train/device_release.sh stage Parasitized
# Call 2, at once (carry .pack/Uninfected.tar .pack/wheels .pack/commit):
#         bash train/device_release.sh stage Uninfected && bash train/device_release.sh train
# Back here: cat <files_at>/exported.tgz.part-* | tar -xzf - -C . (replaces exported/)
#
# SMOKE=1 runs the same path at smoke size (for a check on a CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${MALGAN_DATA:-/tmp/malgan_data}
WORK=${MALGAN_WORK:-/tmp/malgan_work}
OUT=${OUT:?OUT must name the folder whose files come back}
PART_BYTES=15M

case "${1:-}" in
  stage)
    label=${2:?stage needs a class name}
    mkdir -p "$DATA"
    rm -rf "${DATA:?}/$label"
    tar -xf ".pack/$label.tar" -C "$DATA"
    echo "$label: $(find "$DATA/$label" -type f | wc -l) cells in $DATA"
    ;;
  train)
    python3 -c "import tqdm" 2>/dev/null || python3 -m pip install -q --no-index --no-deps .pack/wheels/*.whl
    export PYTHONUNBUFFERED=1
    export MALGAN_GIT_COMMIT=$(cat .pack/commit 2>/dev/null || echo unknown)
    extra=()
    [ "${SMOKE:-0}" = 1 ] && extra+=(--smoke)
    nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>/dev/null | tee "$OUT/gpu.txt" || true
    python3 -m train.pipeline --profile gpu --data "$DATA" --out "$WORK/exported" --runs "$WORK/runs" \
      --cache-dir "$WORK/cache" "${extra[@]}" 2>&1 | tee "$OUT/train.log"
    tar -czf - -C "$WORK" exported | split -b "$PART_BYTES" - "$OUT/exported.tgz.part-"
    ls -la "$OUT"
    ;;
  *)
    echo "usage: OUT=DIR bash train/device_release.sh stage CLASS | train" >&2
    exit 2
    ;;
esac
