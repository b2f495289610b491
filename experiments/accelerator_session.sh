#!/usr/bin/env bash
# The GPU machine's side of an accelerator session, as one command (the device tool runs one command per
# call and returns at most 8 files). In a copy of this repository that carries .whl/ and .carry/ (made
# here by experiments/accelerator_bundle.sh), on a machine with JAX for CUDA and no network:
#   GAN_SECONDS=190 bash experiments/accelerator_session.sh OUT GIT_COMMIT SECONDS JOB...
# installs the wheels into /tmp/site, points the data sets at the carried files, builds the image data
# sets first (in a log of their own, so a data error shows before any job starts), runs
# experiments/run_accelerator.sh's JOBs side by side for at most SECONDS, prints the end of each log and
# packs the logs and experiments/results into OUT/run.tar.gz. GIT_COMMIT is recorded in every result
# file (the copy's .git may not match the working tree that was sent).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: accelerator_session.sh OUT GIT_COMMIT SECONDS JOB...}
commit=${2:?git commit of the working tree}
seconds=${3:?seconds for the jobs}
shift 3

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD AIGC_JAX_HOME=/tmp/aigc AIGC_JAX_GIT_COMMIT=$commit PYTHONUNBUFFERED=1
export AIGC_JAX_FASHION_MNIST_DIR=$PWD/.carry/fashion-mnist CLASSIFIER=${CLASSIFIER:-.carry/cnn_fashion_classifier}
logs=$out/logs
mkdir -p /tmp/aigc/datasets "$logs"
tar -xJf .carry/cmudict_g2p.tar.xz -C /tmp/aigc/datasets
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
} > "$logs/machine.txt" 2>&1
python3 -c "from aigc_jax.data import catalog; catalog.prepare('fashion_mnist'); catalog.prepare('fashion_scenes')" \
  > "$logs/prepare.log" 2>&1

start=$(date +%s)
timeout -s TERM "$seconds" bash experiments/run_accelerator.sh "$logs" "$@"
status=$?  # 124: stopped at SECONDS
echo "run_accelerator.sh exit $status after $(($(date +%s) - start)) s" >> "$logs/machine.txt"

cat "$logs/machine.txt"
for log in "$logs"/*.log; do
  echo "== $log"
  tr '\r' '\n' < "$log" | tail -4  # progress bars end their lines with carriage returns
done
cp -r experiments/results "$out/results"
tar -czf "$out/run.tar.gz" -C "$out" logs results
rm -rf "$logs" "$out/results"
exit $status
