#!/usr/bin/env bash
# The GPU checks of the speed work (precision, channels-last, CUDA graphs, allocator peaks), for a
# machine with one CUDA GPU, as one script whose logs land under $OUT:
#   1. the CUDA tests: parity, precision (fp16 included), loss scaling, CUDA graphs, the shim,
#      each test binary run with UGATIT_TEST_DEVICE=cuda;
#   2. `ugatit bench` against UGATIT-pytorch's own step (pt_step_bench.py, its defaults: TF32
#      convolutions as PyTorch sets them, so ours runs with --tf32 true), alternating, for light
#      64/128/256 px and full 256 px, fp32 and bf16, graphs on and off (ROUNDS=2 repeats each);
#      peak allocated memory of the full model at 256 px is in each bench line. About 8 minutes.
#
# Prepare here, then carry target/gpu (binaries, the reference checkout and its bench script):
#   PT_REPO=/scratch/UGATIT-pytorch tools/gpu/check_speed.sh prepare
# On the GPU machine: OUT=DIR tools/gpu/check_speed.sh   (PYTHON defaults to /opt/torch/.venv's)
# A dry run of its mechanics on a CPU: DEVICE=cpu ARCHS="--light --img-size 96 --ch 8" PYTHON=.venv/bin/python
# (the reference's bench needs numpy there).
set -uo pipefail
kit=target/gpu
if [ "${1:-}" = prepare ]; then
  set -e
  source scripts/env.sh >/dev/null
  cargo build --release
  mkdir -p "$kit/tests"
  cp target/release/ugatit "$kit/"
  # The newest build's CUDA half, beside each executable (where they look for it first).
  shim=$(ls -t target/release/build/ugatit-*/out/libugatit_cuda.so 2>/dev/null | head -1)
  [ -n "$shim" ] || { echo "no libugatit_cuda.so: run UGATIT_NCCL=1 scripts/setup.sh and rebuild" >&2; exit 1; }
  cp "$shim" "$kit/"
  cp "$shim" "$kit/tests/"
  for name in parity_networks parity_train precision loss_scaling cuda_graphs cuda_shim; do
    bin=$(cargo test --release --test "$name" --no-run --message-format=json 2>/dev/null \
      | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
    cp "$bin" "$kit/tests/$name"
  done
  rm -rf "$kit/pt"
  cp -r "${PT_REPO:?set PT_REPO to a UGATIT-pytorch checkout}" "$kit/pt"
  cp ../shared/tools/pt_step_bench.py "$kit/"
  pwd >"$kit/manifest_dir"
  du -sh "$kit"
  exit 0
fi
out=${OUT:-/tmp/ugatit-gpu-speed}
py=${PYTHON:-/opt/torch/.venv/bin/python}
device=${DEVICE:-cuda}
mkdir -p "$out"
exe=$kit/ugatit

echo "== 1. tests with UGATIT_TEST_DEVICE=$device" | tee "$out/summary.txt"
# The test binaries find their fixtures at the path this checkout had when they were built.
built=$(cat "$kit/manifest_dir")
[ -e "$built" ] || { mkdir -p "$(dirname "$built")" && ln -s "$PWD" "$built"; }
for bin in "$kit"/tests/*; do
  [[ $bin == *.so ]] && continue
  name=$(basename "$bin")
  UGATIT_TEST_DEVICE=$device timeout 300 "$bin" --test-threads 1 >"$out/test-$name.log" 2>&1
  echo "$name: exit $? ($(grep -h 'test result' "$out/test-$name.log" | tail -1))" | tee -a "$out/summary.txt"
done

echo "== 2. bench against UGATIT-pytorch's step (median s/iter)" | tee -a "$out/summary.txt"
ours() { # arch flags, then precision, then graphs
  local prec=$1 graphs=$2; shift 2
  "$exe" bench "$@" --device "$device" --tf32 true --precision "$prec" --cuda-graphs "$graphs" --iters 20 --warmup 5 2>&1 | tail -1
}
theirs() {
  "$py" "$kit/pt_step_bench.py" "$kit/pt" "$@" --device "$device" --iters 10 --warmup 3 2>&1 | tail -1
}
# The reference's global discriminator has 7 layers (hard-coded), too deep for 64 px: there ours
# runs alone, with --n-dis 5.
archs=${ARCHS:-"--light --img-size 64 --n-dis 5;--light --img-size 128;--light --img-size 256;--img-size 256"}
IFS=';' read -r -a archs <<<"$archs"
for arch in "${archs[@]}"; do
  read -r -a flags <<<"$arch"
  echo "-- $arch" | tee -a "$out/summary.txt"
  for round in $(seq "${ROUNDS:-1}"); do
    [[ $arch == *64* ]] || echo "pytorch (round $round): $(theirs "${flags[@]}")" | tee -a "$out/summary.txt"
    for prec in fp32 bf16; do
      for graphs in true false; do
        echo "ours $prec graphs $graphs: $(ours "$prec" "$graphs" "${flags[@]}")" | tee -a "$out/summary.txt"
      done
    done
  done
done
