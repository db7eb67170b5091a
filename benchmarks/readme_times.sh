#!/usr/bin/env bash
# The README's commands, run in order as a new user would on a fresh clone, each timed: idle, or with
# one core held by a busy loop (`busy`). The set-up and test commands are left out (CI times those),
# and so are the long-running ones (tensorboard's server, the hours-long reproduction). The --resume
# line continues a run killed with SIGKILL during its second epoch, as the README describes.
# usage: benchmarks/readme_times.sh idle|busy [CLONE_DIR]   (the clone's ../shared/data is used if there)
set -uo pipefail
mode=${1:?idle or busy}; src=$(cd "$(dirname "$0")/.." && pwd); dir=${2:-/tmp/readme-$mode}
rm -rf "$dir" && git clone -q "$src" "$dir" && ln -s "$src/.venv" "$dir/.venv" && cd "$dir" || exit 1
if [ "$mode" = busy ]; then python3 -c "while True: pass" & HOG=$!; trap 'kill $HOG' EXIT; sleep 1; fi
echo "# $(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $mode, $(git rev-parse --short HEAD)"
python3 - README.md <<'PY' | while IFS= read -r cmd; do
import re, shlex, sys
for block in re.findall(r"```bash\n(.*?)```", open(sys.argv[1]).read(), re.S):
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words and not any(s in line for s in ("python3 -m venv", "-m pytest", "tensorboard --logdir", "(hours)")):
            print(shlex.join(words))
PY
  if [[ $cmd == *--resume* ]]; then  # kill the latest fc run (a rerun) in its second epoch, then resume it
    bash -c "exec $prev" > /dev/null 2>&1 & pid=$!
    until ls runs/mnist/fc/version_*/checkpoints/last.ckpt 2> /dev/null | grep -q "version_$((n_fc))/"; do sleep 0.5; done
    kill -9 $pid; wait $pid 2> /dev/null
  fi
  start=$(date +%s.%N); eval "$cmd" > log.txt 2>&1; rc=$?; end=$(date +%s.%N)
  printf '%7.1f s  rc=%d  %s\n' "$(echo "$end - $start" | bc)" $rc "$cmd"
  [ $rc = 0 ] || tail -3 log.txt
  [[ $cmd == *--config* ]] && prev=$cmd
  n_fc=$(ls -d runs/mnist/fc/version_* 2> /dev/null | wc -l)
done
