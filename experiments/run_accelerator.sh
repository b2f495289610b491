#!/usr/bin/env bash
# The issue-3 and issue-4 runs that need an accelerator, side by side on one GPU (~9 minutes on an H200):
#   CLASSIFIER=workdirs/experiments/cnn_fashion__cpu bash experiments/run_accelerator.sh [LOGDIR]
# (experiments/accelerator_bundle.sh packs what it needs for a GPU machine without network.)
# - unet_fashion_scenes `full` (levels 32..512, 20,000 steps of 32 scenes);
# - transformer_g2p `full` (4 + 4 layers x 256, 20,000 steps of 256 words; recorded with the step count
#   given on the command line, as the preset had 30,000 then);
# - the MLP GAN against the DCGAN (`full`, width 128) for the same 170 s of training each, one after the
#   other, scored by the CLASSIFIER's features.
# Each `max_train_seconds` is a safety net for the shared window (a run it stops says so in its log and
# records its steps). Three processes share the GPU, so each takes a quarter of its memory.
set -uo pipefail
cd "$(dirname "$0")/.."
logs=${1:-logs}
mkdir -p "$logs"
PY=${PYTHON:-python3}
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.25}

$PY experiments/unet_fashion_scenes.py --preset full --config.train.max_train_seconds=360 \
  > "$logs/unet_fashion_scenes__full.log" 2>&1 &
unet=$!
$PY experiments/transformer_g2p.py --preset full --config.train.num_steps=20000 \
  --config.train.max_train_seconds=360 > "$logs/transformer_g2p__full.log" 2>&1 &
g2p=$!
$PY experiments/gans_fashion.py --preset full --classifier-workdir "${CLASSIFIER:?set CLASSIFIER}" \
  --config.train.num_steps=100000000 --config.train.max_train_seconds=170 > "$logs/gans_fashion__full.log" 2>&1 &
gans=$!

status=0
for pid in $unet $g2p $gans; do
  wait "$pid" || status=1
done
exit $status
