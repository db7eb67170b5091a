#!/usr/bin/env bash
# Screenshots of what TensorBoard shows without a click: the scalars (time series) page and the
# HParams tab of a log folder, taken by headless Chromium from a TensorBoard bound to 127.0.0.1 only.
#
#   docs/tensorboard_screenshots.sh LOGDIR OUT_PREFIX
#   docs/tensorboard_screenshots.sh runs/mnist/vae/version_0 docs/img/tb_run
#       -> docs/img/tb_run_scalars.png, docs/img/tb_run_hparams.png
#
# Needs Chromium (Debian: apt-get install -y chromium) and the project's .venv. The runs behind
# docs/img/tb_*.png (issue 21): a single run
#   python train.py --variant vae --subset 2000 --max-epochs 2 --output-dir /tmp/tbshots
# and a sweep
#   python -m search.tune --variant fc --space configs/search/small.yaml --num-samples 4 --max-epochs 2 \
#       --subset 2000 --storage /tmp/tbshots/search --name fc-sweep --num-cpus 1
set -euo pipefail
logdir=${1:?usage: $0 LOGDIR OUT_PREFIX}
prefix=${2:?usage: $0 LOGDIR OUT_PREFIX}
port=${PORT:-6006}
root=$(cd "$(dirname "$0")/.." && pwd)
chromium=$(command -v chromium || command -v chromium-browser || command -v google-chrome)
mkdir -p "$(dirname "$prefix")"

"$root/.venv/bin/tensorboard" --logdir "$logdir" --host 127.0.0.1 --port "$port" >/tmp/tensorboard_shots.log 2>&1 &
tb=$!
trap 'kill "$tb" 2>/dev/null || true' EXIT
for _ in $(seq 60); do  # until it answers (it reads the event files first)
    curl -sf "http://127.0.0.1:$port/data/runs" >/dev/null && break
    sleep 1
done
sleep 3

shot() {  # shot PAGE FILE WIDTH,HEIGHT SCALE: the page after its data has loaded (virtual time runs the timers)
    "$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size="$3" \
        --force-device-scale-factor="$4" --virtual-time-budget=40000 --screenshot="$2" "http://127.0.0.1:$port/?darkMode=false#$1" \
        >/dev/null 2>&1
    echo "$2"
}
shot timeseries "${prefix}_scalars.png" 2800,2400 0.5  # zoomed out: the train and val groups, both open
shot hparams "${prefix}_hparams.png" 1400,700 1
