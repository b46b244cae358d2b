#!/usr/bin/env bash
# Everything one GPU session checks and measures, in one call, under one time budget:
#   A (alone on the GPU): environment; tests/test_cuda.py; epoch benchmarks of the fast path
#     and of the fp32 path (validation curves side by side) for sasrec/elcrec/adarec/release
#     (the Beauty presets unless SUFFIX says otherwise), a profile of adarec and release steps
#     (kernel time, kernels per step), CUDA graphs through torch.compile; torchrun (DDP)
#     over the node's GPUs against one process;
#   B (what time is left): `adarec reproduce`: adarec-$SUFFIX in the background with
#     most of the time, and release / sasrec / elcrec / adarec short5 one after the other
#     beside it (their epoch times are then shared-GPU times; the benchmarks of A are not);
#     or, with EVIDENCE=1, issue 15's equal-width runs on Beauty (adarec-beauty-h64 and
#     sasrec-beauty, seeds 1-3, and three ablations), all side by side.
# Every step has its own limit, so a slow or failing step cannot eat the others.
#
# Usage, from the repository root on the GPU machine (the dataset file and SHA256SUMS in
# DATA_DIR):
#   BUDGET_S=540 DATA_DIR=.gpu/data OUT=/some/dir [SUFFIX=toys] [BENCH=0] [GRAPHS=0] [DDP=0] \
#     bash benchmarks/gpu_check.sh
# Output: $OUT/summary.txt (the step log) and $OUT/gpu.tar.gz (logs/, results/Beauty/).
set -u
OUT=${OUT:-$PWD/gpu-out}
PY=${PY:-python3}
WORK=$(mktemp -d)
mkdir -p "$OUT" "$WORK/logs" "$WORK/bench" "$WORK/results"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export ADAREC_DATA_DIR=${DATA_DIR:-$PWD/.gpu/data} OMP_NUM_THREADS=4
DEADLINE=$(( $(date +%s) + ${BUDGET_S:-540} ))
# Another benchmark: SUFFIX=toys (sports, yelp) picks the matching presets.
# For a dry run of this script on a CPU: DEVICE=cpu DATASET=synthetic EXTRA_SET="k=v ...".
DEVICE=${DEVICE:-cuda} SUFFIX=${SUFFIX:-beauty}
EXTRA=()
[[ -n "${DATASET:-}" ]] && EXTRA+=(--set "data.dataset=$DATASET")
for kv in ${EXTRA_SET:-}; do EXTRA+=(--set "$kv"); done
SUMMARY=$OUT/summary.txt

say() { echo "$*" | tee -a "$SUMMARY"; }
left() { echo $(( DEADLINE - $(date +%s) )); }
pack() {  # keep $OUT current after every step: a later kill loses nothing already done
  local tmp="$WORK/gpu.tar.gz.$BASHPID"
  tar czf "$tmp" -C "$WORK" logs bench results 2>/dev/null && mv "$tmp" "$OUT/gpu.tar.gz"
}
step() {  # step NAME LIMIT_S COMMAND...
  local name=$1 limit=$2 rc; shift 2
  if (( $(left) < 20 )); then say "SKIP $name: no time left"; return; fi
  (( limit > $(left) )) && limit=$(left)
  say "=== $name (limit ${limit}s) $(date +%T)"
  timeout -k 5 "$limit" "$@" > "$WORK/logs/$name.log" 2>&1; rc=$?
  say "=== $name rc=$rc $(date +%T)"
  tail -n "${TAIL:-15}" "$WORK/logs/$name.log" | tee -a "$SUMMARY"
  pack
}
bench() {  # bench NAME LIMIT_S PRESET WARMUP EPOCHS [--set ...]
  local name=$1 limit=$2 preset=$3 warmup=$4 epochs=$5; shift 5
  step "bench-$name" "$limit" "$PY" benchmarks/bench_epoch.py --preset "$preset" \
    --device "$DEVICE" --warmup "$warmup" --epochs "$epochs" \
    --json "$WORK/bench/$name.json" ${EXTRA[@]+"${EXTRA[@]}"} "$@"
}
reproduce() {  # reproduce NAME LIMIT_S MINUTES PRESET [options...]
  local name=$1 limit=$2 minutes=$3 preset=$4; shift 4
  step "reproduce-$name" "$limit" "$PY" -m adarec reproduce --preset "$preset" --seed "${SEED:-1}" \
    --device "$DEVICE" --max-minutes "$minutes" --results-dir "$WORK/results" \
    --runs-dir "$WORK/runs" --no-progress ${EXTRA[@]+"${EXTRA[@]}"} "$@"
}

# ---- A: alone on the GPU
step env 30 bash -c "nvidia-smi; $PY -c 'import torch, typer, sklearn, pandas, yaml, tqdm, \
tensorboard; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())'; \
ls -l $ADAREC_DATA_DIR"
# BENCH=0 skips the tests and benchmarks of A (a session for reproduction runs only).
# Ordered by what the open questions need most (each step's limit is cut to the time left):
# the fast path, CUDA graphs, the profiles, the other presets, fp32 (measured before) last.
if [[ "${BENCH:-1}" == 1 ]]; then
TAIL=25 step tests-cuda 90 "$PY" -m pytest -q -p no:cacheprovider -s tests/test_cuda.py
bench sasrec-fast 40 sasrec-$SUFFIX 1 6 --eval-batch-sizes 2048 8192
bench adarec-fast 70 adarec-$SUFFIX 1 3 --eval-batch-sizes 2048
bench release-fast 70 release-$SUFFIX 1 3
# CUDA graphs through torch.compile (every loss traces as one graph, GRUs included);
# GRAPHS=0 skips these (compilation alone may take a minute or two).
if [[ "${GRAPHS:-1}" == 1 ]]; then
  for p in adarec release sasrec; do
    bench $p-graphs 100 $p-$SUFFIX 1 2 --set runtime.compile=true \
      --set runtime.compile_mode=reduce-overhead
  done
  # Compiled against eager loss parts, same random numbers (and step times).
  step check-compile 120 "$PY" benchmarks/check_compile.py --preset release-$SUFFIX \
    --device "$DEVICE" --mode reduce-overhead ${EXTRA[@]+"${EXTRA[@]}"}
fi
# Where a step's time goes on the GPU: kernel time against wall time, kernels per step.
TAIL=40 step profile-adarec 60 "$PY" benchmarks/profile_step.py --preset adarec-$SUFFIX \
  --device "$DEVICE" --steps 5 --rows 25 ${EXTRA[@]+"${EXTRA[@]}"}
TAIL=40 step profile-release 60 "$PY" benchmarks/profile_step.py --preset release-$SUFFIX \
  --device "$DEVICE" --steps 5 --rows 25 ${EXTRA[@]+"${EXTRA[@]}"}
bench elcrec-fast 45 elcrec-$SUFFIX 1 3
# torchrun over this node's GPUs (docs/distributed.md; DDP=0 skips): NCCL end to end with
# `adarec train`, then the epoch benchmark of 1 process (sasrec-fast, adarec-fast above)
# against one process per GPU on the same global batch. Needs 2 or more GPUs: one process
# on one GPU is no process group at all, and NCCL refuses two ranks on one GPU.
NGPU=$("$PY" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
if [[ "${DDP:-1}" == 1 && "$DEVICE" == cuda && "$NGPU" -lt 2 ]]; then
  say "SKIP ddp: $NGPU GPU(s) visible; NCCL under torchrun needs 2 or more"
fi
if [[ "${DDP:-1}" == 1 && "$DEVICE" == cuda && "$NGPU" -ge 2 ]]; then
  TORCHRUN=("$PY" -m torch.distributed.run --standalone --nproc_per_node "$NGPU")
  step ddp-train-nccl 60 "${TORCHRUN[@]}" -m adarec train --device cuda --max-epochs 2 \
    --no-progress --output-dir "$WORK/runs"
  step bench-sasrec-ddp$NGPU 60 "${TORCHRUN[@]}" benchmarks/bench_epoch.py \
    --preset sasrec-$SUFFIX --device cuda --warmup 1 --epochs 6 \
    --json "$WORK/bench/sasrec-ddp$NGPU.json" ${EXTRA[@]+"${EXTRA[@]}"}
  step bench-adarec-ddp$NGPU 80 "${TORCHRUN[@]}" benchmarks/bench_epoch.py \
    --preset adarec-$SUFFIX --device cuda --warmup 1 --epochs 3 \
    --json "$WORK/bench/adarec-ddp$NGPU.json" ${EXTRA[@]+"${EXTRA[@]}"}
fi
bench sasrec-fp32 40 sasrec-$SUFFIX 1 6 --set runtime.precision=fp32
bench adarec-fp32 70 adarec-$SUFFIX 1 2 --set runtime.precision=fp32
fi  # BENCH

# ---- B: reproduction runs with the time that is left
minutes() { $PY -c "print(round(max($1, 0.25), 2))"; }
rest=$(( $(left) - 30 ))
if [[ "${EVIDENCE:-0}" == 1 ]] && (( rest > 90 )); then
  # Issue 15's equal-width comparison on Beauty, all side by side on the one GPU: ADARec at
  # sasrec-beauty's size against sasrec-beauty, seeds 1-3, and three Table 4 ablations
  # (seed 1). Runs cut by the time limit say so (stop_reason: time_limit).
  ev_min=$(minutes "($rest - 60) / 60")
  pids=()
  for s in 1 2 3; do
    SEED=$s reproduce "h64-seed$s" "$rest" "$ev_min" adarec-beauty-h64 & pids+=($!)
    SEED=$s reproduce "sasrec-seed$s" "$rest" "$ev_min" sasrec-beauty & pids+=($!)
  done
  reproduce h64-noadc "$rest" "$ev_min" adarec-beauty-h64 --tag noadc \
    --set adarec.controller=fixed --set adarec.fixed_depth=10 & pids+=($!)
  reproduce h64-nohda "$rest" "$ev_min" adarec-beauty-h64 --tag nohda \
    --set adarec.denoise=false & pids+=($!)
  reproduce h64-oneexpert "$rest" "$ev_min" adarec-beauty-h64 --tag oneexpert \
    --set adarec.experts=1 & pids+=($!)
  wait "${pids[@]}"
  for folder in "$WORK"/results/*/; do
    $PY -c "from adarec.reproduce import write_table; from pathlib import Path; write_table(Path('$folder'))"
  done
elif (( rest > 90 )); then
  main_min=$(minutes "($rest - 45) / 60")
  reproduce adarec-$SUFFIX "$rest" "$main_min" adarec-$SUFFIX &
  main=$!
  side=$(( rest / 4 ))
  side_min=$(minutes "($side - 45) / 60")
  reproduce adarec-short5 "$side" "$side_min" adarec-$SUFFIX --tag short5 --shorten-seq-to 5
  reproduce release-$SUFFIX "$side" "$side_min" release-$SUFFIX
  reproduce sasrec-$SUFFIX "$side" "$side_min" sasrec-$SUFFIX
  reproduce elcrec-$SUFFIX "$side" "$side_min" elcrec-$SUFFIX
  wait "$main"
  for folder in "$WORK"/results/*/; do
    $PY -c "from adarec.reproduce import write_table; from pathlib import Path; write_table(Path('$folder'))"
  done
else
  say "SKIP reproduction: only ${rest}s left"
fi
pack
say "done at $(date +%T), $(left)s of the budget left"
