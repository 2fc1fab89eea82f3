#!/usr/bin/env bash
# Release training on a lent GPU machine whose checkout cannot hold both classes at once.
# The GPU trains, probes and evaluates; the export (ONNX files, CPU latencies) runs back here.
#
# Here:   python -m train.pack --data ../shared/data/cell_images_64 --out .pack
#         git rev-parse HEAD > .pack/commit
#         pip download --no-deps -d .pack/wheels tqdm==4.70.1
#         pip download --no-deps --only-binary=:all: --python-version 3.12 \
#             --platform manylinux_2_28_x86_64 -d .pack/wheels pillow
# Call 1 (carry .pack/Parasitized.tar .pack/commit):
#         bash train/device_release.sh stage Parasitized
# Call 2, at once (carry .pack/Uninfected.tar .pack/wheels .pack/commit):
#         bash train/device_release.sh stage Uninfected && bash train/device_release.sh train
# Call 3, at once, only if call 2 left parts behind or its training stopped at TRAIN_SECONDS
# (the same command resumes it):
#         bash train/device_release.sh train   (or: bash train/device_release.sh fetch)
# Back here: cat <files_at>/runs.tgz.part-* | tar -xzf - -C <runs parent>
#            python -m train.export --runs <runs> --out exported
#
# SMOKE=1 runs the same path at smoke size (for a check on a CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${MALGAN_DATA:-/tmp/malgan_data}
WORK=${MALGAN_WORK:-/tmp/malgan_work}
OUT=${OUT:?OUT must name the folder whose files come back}
TRAIN_SECONDS=${TRAIN_SECONDS:-540}
JOBS=${JOBS:-4}
PART_BYTES=15M
# What one call may bring back: 64 MiB, 16 MiB a file.
PARTS_PER_CALL=4
SHIP=$WORK/ship

# Copy up to PARTS_PER_CALL parts that have not come back yet into $OUT.
fetch() {
  local sent=0
  for part in "$SHIP"/runs.tgz.part-*; do
    [ -e "$part" ] || break
    [ "$sent" -lt "$PARTS_PER_CALL" ] || break
    mv "$part" "$OUT/"
    sent=$((sent + 1))
  done
  echo "sent $sent parts; left: $(find "$SHIP" -name 'runs.tgz.part-*' | wc -l)"
  ls -la "$OUT"
}

case "${1:-}" in
  stage)
    label=${2:?stage needs a class name}
    mkdir -p "$DATA"
    rm -rf "${DATA:?}/$label"
    tar -xf ".pack/$label.tar" -C "$DATA"
    echo "$label: $(find "$DATA/$label" -type f | wc -l) cells in $DATA"
    ;;
  train)
    python3 -c "import PIL, tqdm" 2>/dev/null \
      || python3 -m pip install -q --no-index --no-deps .pack/wheels/*.whl
    export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=15
    export MALGAN_GIT_COMMIT=$(cat .pack/commit 2>/dev/null || echo unknown)
    extra=()
    [ "${SMOKE:-0}" = 1 ] && extra+=(--smoke)
    nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>/dev/null | tee "$OUT/gpu.txt" || true
    status=0
    timeout "$TRAIN_SECONDS" python3 -m train.pipeline --profile gpu --jobs "$JOBS" \
      --data "$DATA" --out "$WORK/exported" --runs "$WORK/runs" --cache-dir "$WORK/cache" \
      --stages classifier resnet_plain cnn_report cnn_report_unit cnn_sound diagnose_cnn \
      dcgan cgan throughput evaluate "${extra[@]}" >"$OUT/train.log" 2>&1 || status=$?
    tail -n 40 "$OUT/train.log"
    echo "pipeline exit status: $status"
    # Weights, histories, snapshots and the evaluation; not the resumable checkpoints.
    rm -rf "$SHIP" && mkdir -p "$SHIP"
    tar -czf - -C "$WORK" --exclude=checkpoint.pt --exclude=best.pt runs \
      | split -b "$PART_BYTES" - "$SHIP/runs.tgz.part-"
    fetch
    ;;
  fetch)
    fetch
    ;;
  *)
    echo "usage: OUT=DIR bash train/device_release.sh stage CLASS | train | fetch" >&2
    exit 2
    ;;
esac
