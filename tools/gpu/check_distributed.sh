#!/usr/bin/env bash
# The GPU checks of data-parallel training, for a machine with one CUDA GPU (NCCL refuses two
# ranks on one device), as one script whose logs land under $OUT:
#   1. NCCL with a world of one, through the same code path as N ranks, against a plain CUDA run
#      of the same seed (every loss term: max relative difference printed);
#   2. two ranks on the one GPU over Gloo (CUDA tensors), against one process of twice the batch;
#   3. `ugatit bench` of both at light 256 px against the single process.
# Needs target/release/ugatit with target/release/libugatit_cuda.so beside it (build with
# `UGATIT_NCCL=1 scripts/setup.sh` first). Usage: OUT=DIR tools/gpu/check_distributed.sh
# (DEVICE=cpu BENCH_PX=0 tries steps 1 and 2 on a CPU, where step 1 fails as it should.)
set -uo pipefail
exe=${UGATIT:-target/release/ugatit}
out=${OUT:-/tmp/ugatit-gpu-distributed}
mkdir -p "$out"
run=(--dataset assets/sample --iteration 3 --img-size 64 --n-dis 5 --light --seed 7 --decay-flag false
  --print-freq 1000 --save-freq 1000 --device "${DEVICE:-cuda}")

# Max relative difference of every column but the step between two losses.csv files (8 decimals
# in the file: terms under 1e-3 are compared to 1e-3).
compare() {
  [ -f "$1/sample/losses.csv" ] && [ -f "$2/sample/losses.csv" ] || { echo "no losses to compare"; return; }
  awk -F, 'FNR == 1 { next } NR == FNR { for (i = 2; i <= NF; i++) a[FNR, i] = $i; next }
    { for (i = 2; i <= NF; i++) { d = a[FNR, i] - $i; d = d < 0 ? -d : d; m = $i < 0 ? -$i : $i;
      r = d / (m > 1e-3 ? m : 1e-3); if (r > worst) worst = r } }
    END { printf "max relative difference of the loss terms: %.3g\n", worst }' "$1/sample/losses.csv" "$2/sample/losses.csv"
}

rank() { # rank R of a world of SIZE on cuda:0 at PORT, then the training arguments
  local r=$1 size=$2 port=$3; shift 3
  RANK=$r WORLD_SIZE=$size LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$exe" "$@"
}

echo "== 1. NCCL, world of one" | tee "$out/summary.txt"
"$exe" train "${run[@]}" --result-dir "$out/plain" >"$out/plain.log" 2>&1; echo "plain: exit $?" | tee -a "$out/summary.txt"
rank 0 1 29511 train "${run[@]}" --dist-backend nccl --result-dir "$out/nccl1" >"$out/nccl1.log" 2>&1
echo "nccl, 1 rank: exit $?" | tee -a "$out/summary.txt"
compare "$out/plain" "$out/nccl1" | tee -a "$out/summary.txt"

echo "== 2. Gloo, two ranks on one GPU" | tee -a "$out/summary.txt"
"$exe" train "${run[@]}" --batch-size 2 --result-dir "$out/batch2" >"$out/batch2.log" 2>&1
echo "1 process, batch 2: exit $?" | tee -a "$out/summary.txt"
rank 1 2 29512 train "${run[@]}" --dist-backend gloo --result-dir "$out/gloo2" >"$out/gloo2-rank1.log" 2>&1 &
rank 0 2 29512 train "${run[@]}" --dist-backend gloo --result-dir "$out/gloo2" >"$out/gloo2-rank0.log" 2>&1
echo "gloo, 2 ranks: exit $? (rank 1: $(wait $!; echo $?))" | tee -a "$out/summary.txt"
compare "$out/batch2" "$out/gloo2" | tee -a "$out/summary.txt"

[ "${BENCH_PX:-256}" = 0 ] && exit 0
echo "== 3. bench, light ${BENCH_PX:-256} px" | tee -a "$out/summary.txt"
bench=(bench --light --img-size "${BENCH_PX:-256}" --iters 10 --warmup 3 --device "${DEVICE:-cuda}")
for round in 1 2; do
  "$exe" "${bench[@]}" 2>&1 | tail -1 | tee -a "$out/summary.txt"
  rank 0 1 29513 "${bench[@]}" --dist-backend nccl 2>&1 | tail -1 | tee -a "$out/summary.txt"
  "$exe" "${bench[@]}" --batch-size 2 2>&1 | tail -1 | tee -a "$out/summary.txt"
  rank 1 2 29514 "${bench[@]}" --dist-backend gloo >/dev/null 2>&1 &
  rank 0 2 29514 "${bench[@]}" --dist-backend gloo 2>&1 | tail -1 | tee -a "$out/summary.txt"
  wait
done
