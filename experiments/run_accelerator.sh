#!/usr/bin/env bash
# The issue-3 and issue-4 runs that need an accelerator, side by side on one GPU:
#   CLASSIFIER=workdirs/experiments/cnn_fashion__cpu bash experiments/run_accelerator.sh LOGDIR JOB...
# (experiments/accelerator_bundle.sh packs what they need for a GPU machine without network, and
# experiments/accelerator_session.sh runs them there as one command.)
# Jobs, each one process, all started at once and waited for:
# - unet: unet_fashion_scenes `full` (levels 32..512) as it was until stop 20: 20,000 steps of 32 stored
#   scenes (the preset now trains 45,000 steps on fresh scenes: unet_fresh_scenes);
# - unet_30000_steps: the same for 30,000 steps;
# - unet_fresh_scenes: the `full` preset since stop 20 — 45,000 steps with training scenes composed afresh
#   for every batch (`data.fresh_train_scenes`: the 60,000 stored ones are over-fitted after ~12,000
#   steps), and with the presets' soft-Jaccard loss term at weight 1, which the earlier unet runs did not
#   have; sized (~110 steps/s beside another job) to last about as long as the gans job, so both GANs
#   share the GPU alike (it ran 390 of the gans job's 480 s at stop 20);
# - unet_60000_steps: the `full` preset for 60,000 steps (0.841 after 45,000 missed 0.85 by 0.009 with
#   its validation scores still rising; 127 steps/s beside the gans job, so ~430-470 s alone: run it
#   alone, `accelerator_session.sh "$OUT" COMMIT 520 unet_60000_steps` in a 590-s call);
# - unet_fresh_scenes_no_jaccard: the same for 30,000 steps without it (`train.jaccard_weight=0`; on the
#   cpu preset weight 1 gained 0.008 and 0.012 validation mean IoU in two seeds);
# - unet_fresh_scenes_batch64: unet_fresh_scenes for 30,000 steps of 64 scenes (1.3 times the scenes; at
#   stop 10 the U-Net's steps of 32 ran about as fast beside two other jobs as alone, 168.8 s against
#   162.9 s for 20,000, so the GPU had room to spare — how much a step of 64 costs is not yet measured);
# - g2p: transformer_g2p `full` (4 + 4 layers x 256, 20,000 steps of 256 words);
# - gans: the MLP GAN against the DCGAN (`full`, width 128) for the same GAN_SECONDS (default 170) of
#   training each, one after the other, scored by the CLASSIFIER's features; the two evaluations and
#   compilations add ~80 s, so alone in a 530-s window GAN_SECONDS=220 fits. (Stop 10's 170 s: DCGAN fd
#   48.2 against 95.0, 0.508x; in-training evaluations show both still improving: DCGAN 50.4 / 46.3 / 48.2
#   at steps 30k / 35k / 39k, MLP 113.6 / 109.5 / 95.0 at 30k / 40k / 43.5k; the DCGAN's `full` preset has
#   averaged its generator's weights since, as the cpu preset does);
# - dcgan_average: the DCGAN alone (`full`) for GAN_SECONDS, its evaluations on the validation split
#   reporting the generator's moving average (`fd_fashion`) beside its last step (`fd_fashion_last_step`);
# - seqgan: SeqGAN against MLE on the oracle benchmark, `full` (the paper's discriminator, a shortened
#   schedule; its MLE baseline gets as many steps as SeqGAN took);
# - seqgan_d_lr_1e-3: the same with the discriminator's Adam at 1e-3 instead of the paper's 1e-4.
# (Stop 11 ran both seqgan jobs before the policy-gradient steps had an Adam state of their own, the
# default since: results seqgan__full*_shared_pg_optimizer.json.)
# Each `max_train_seconds` is a safety net for the shared 10-minute window (a run it stops says so in its
# log and records its steps). The processes share the GPU, so each takes a fifth of its memory by default
# (XLA_PYTHON_CLIENT_MEM_FRACTION).
# On an H200: stop 10 ran unet + g2p + gans (470 s), stop 11 seqgan + seqgan_d_lr_1e-3 + unet_30000_steps.
set -uo pipefail
cd "$(dirname "$0")/.."
logs=${1:?usage: run_accelerator.sh LOGDIR JOB...}
shift
mkdir -p "$logs"
PY=${PYTHON:-python3}
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.2}

command_of() {
  case $1 in
    unet)
      echo experiments/unet_fashion_scenes.py --preset full --config.data.fresh_train_scenes=false \
        --config.train.num_steps=20000 --config.train.max_train_seconds=360 ;;
    unet_30000_steps)
      echo experiments/unet_fashion_scenes.py --preset full --tag 30000_steps \
        --config.data.fresh_train_scenes=false --config.train.num_steps=30000 \
        --config.train.max_train_seconds=400 ;;
    unet_fresh_scenes)
      echo experiments/unet_fashion_scenes.py --preset full --tag fresh_scenes_45000_steps \
        --config.data.fresh_train_scenes=true --config.train.num_steps=45000 \
        --config.train.max_train_seconds=430 ;;
    unet_60000_steps)
      echo experiments/unet_fashion_scenes.py --preset full --tag 60000_steps \
        --config.train.num_steps=60000 --config.train.max_train_seconds=470 ;;
    unet_fresh_scenes_no_jaccard)
      echo experiments/unet_fashion_scenes.py --preset full --tag fresh_scenes_no_jaccard_30000_steps \
        --config.data.fresh_train_scenes=true --config.train.jaccard_weight=0 \
        --config.train.num_steps=30000 --config.train.max_train_seconds=400 ;;
    unet_fresh_scenes_batch64)
      echo experiments/unet_fashion_scenes.py --preset full --tag fresh_scenes_batch64_30000_steps \
        --config.data.fresh_train_scenes=true --config.train.batch_size=64 \
        --config.train.num_steps=30000 --config.train.max_train_seconds=400 ;;
    g2p) echo experiments/transformer_g2p.py --preset full --config.train.max_train_seconds=360 ;;
    gans)
      echo experiments/gans_fashion.py --preset full --classifier-workdir "${CLASSIFIER:?set CLASSIFIER}" \
        --config.train.num_steps=100000000 --config.train.max_train_seconds="${GAN_SECONDS:-170}" ;;
    dcgan_average)
      echo -m aigc_jax.cli train dcgan_fashion --preset full --workdir /tmp/aigc/dcgan_average \
        --config.eval.classifier_workdir="${CLASSIFIER:?set CLASSIFIER}" --config.train.num_steps=100000000 \
        --config.train.max_train_seconds="${GAN_SECONDS:-170}" ;;
    seqgan) echo experiments/seqgan.py --preset full --config.train.max_train_seconds=240 ;;
    seqgan_d_lr_1e-3)
      echo experiments/seqgan.py --preset full --tag d_lr_1e-3 --config.optim_d.learning_rate=1e-3 \
        --config.train.max_train_seconds=240 ;;
    *) return 1 ;;
  esac
}

pids=()
for job in "$@"; do
  args=$(command_of "$job") || { echo "unknown job $job" >&2; exit 2; }
  # shellcheck disable=SC2086  # the arguments hold no spaces
  $PY $args > "$logs/$job.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=1
done
exit $status
