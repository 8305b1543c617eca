#!/bin/sh
# The GPU benchmark in one call, from the repository root on a machine whose python3 has torch with CUDA:
#   sh benchmarks/gpu.sh [DIR]          (tables into DIR, default results/bench; about 3 minutes on one H100, then up to 4
#                                       for the compile comparison)
# N = 256, M = 10, T = 128 on the shipped DNA networks: the official call pattern, svdd's defaults (output checks
# queued on the device and read once per step) and svdd-eager (every check at its call, as before), 3 alternated runs
# each; then a torch.profiler summary of both svdd variants (kernel time, launches and host-device syncs per step).
# First `benchmarks/gpu_checks.py`: syncs per step counted by CUDA's sync detector, and the queued checks stopping a
# run on a NaN denoiser and a +inf reward. Last (at most 4 minutes, so that the tables above come back whatever
# happens), `benchmarks/compile_rows.py`: the two networks per row, eager against torch.compile with dynamic shapes
# and with static shapes and CUDA graphs, at 2048 rows (about the chunk the engine picks on an H100).
set -eu
DIR=${1:-results/bench}
KIND=$(python3 -c "import torch; print(torch.cuda.get_device_name().split()[1].lower())")
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$DIR"
python3 benchmarks/gpu_checks.py | tee "$DIR/$KIND-few-syncs-checks.txt"
python3 benchmarks/bench_dna.py --device cuda -N 256 --repeats 3 --variants official,svdd,svdd-eager \
  --out "$DIR/$KIND-few-syncs"
python3 benchmarks/bench_dna.py --device cuda -N 256 --variants '' --trace "$DIR/$KIND-few-syncs-trace.md" \
  --trace-variants svdd,svdd-eager
timeout 240 python3 benchmarks/compile_rows.py --device cuda --sizes 2048 --variants eager,dynamic,graphs \
  --rounds 3 --rows-per-round 20480 --out "$DIR/$KIND-compile-rows" || echo "compile_rows: exit $?"
