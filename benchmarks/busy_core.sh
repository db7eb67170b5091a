#!/usr/bin/env bash
# the main job's epochs and bench_fit: idle and with one core held by a busy loop, at 1 and 2 torch threads,
# with OpenMP's wait policy unset (libgomp's default), passive and active
cd "$(dirname "$0")/.."
for cond in idle busy; do
  if [ $cond = busy ]; then python3 -c "while True: pass" & HOG=$!; sleep 1; fi
  for th in 1 2; do for wp in default PASSIVE ACTIVE; do
    envs="OMP_NUM_THREADS=$th"; [ $wp != default ] && envs="$envs OMP_WAIT_POLICY=$wp"
    out=$(env $envs timeout 300 .venv/bin/python train.py --variant vae --subset 20000 --max-epochs 2 \
          --set model.nll_samples=1 --set data.test_subset=1000 --set trainer.images_every_n_epochs=0 \
          --output-dir /tmp/thr-runs 2>&1 | grep "^epoch" | awk '{print $NF=="s" ? $(NF-1) : $0}' | tr '\n' ' ')
    bf=$(env $envs timeout 300 .venv/bin/python benchmarks/bench_fit.py --epochs 3 --repeats 1 --subset 20000 --threads $th 2>&1 | grep -E "^project|^plain" | awk '{print $1"="$2}' | tr '\n' ' ')
    echo "$cond threads=$th wait=$wp | vae epoch s: $out| bench_fit epoch_s: $bf"
  done; done
  if [ $cond = busy ]; then kill $HOG; fi
done
