#!/usr/bin/env bash
# Packs what experiments/run_accelerator.sh needs on a GPU machine that has JAX with CUDA but no network
# and none of TFDS, Grain or ml_collections (the H200 runs of stop 10 were made this way):
#   bash experiments/accelerator_bundle.sh [CLASSIFIER_WORKDIR]
# writes .whl/ (this project's pinned pure-Python and cp312 manylinux wheels, ~13 MB) and .carry/ (the
# Debian Fashion-MNIST files, the built cmudict_g2p set and the classifier's config and newest checkpoint,
# ~40 MB), both in .gitignore. Then, on the GPU machine, from the repository root (the device tool's one
# command, with carry [".whl", ".carry"]):
#   GAN_SECONDS=190 bash experiments/accelerator_session.sh "$OUT" <git commit> 510 JOB...
set -euo pipefail
cd "$(dirname "$0")/.."
classifier=${1:-workdirs/experiments/cnn_fashion__cpu}
PY=${PYTHON:-.venv/bin/python}
datasets=$($PY -c "from aigc_jax.data import catalog; print(catalog.default_data_dir())")

mkdir -p .whl .carry/fashion-mnist .carry/cnn_fashion_classifier/checkpoints
# cp312 wheels for the GPU image's Python 3.12; --no-deps: the image has JAX, NumPy, protobuf, etc.
for package in tensorflow-datasets==4.9.10 array-record==0.8.6 grain==0.2.18 flax==0.12.8 optax==0.2.8 \
  orbax-checkpoint==0.12.8 ml-collections tensorboardX dm-tree simple-parsing tensorflow-metadata termcolor \
  toml immutabledict docstring-parser importlib_resources portpicker googleapis-common-protos; do
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "$package"
done
$PY -m pip wheel -q --no-deps -w .whl promise  # TFDS needs it; PyPI has only its sdist

cp /usr/share/datasets/fashion-mnist/*.gz .carry/fashion-mnist/
$PY -c "from aigc_jax.data import catalog; catalog.prepare('cmudict_g2p')"
tar -cJf .carry/cmudict_g2p.tar.xz -C "$datasets" cmudict_g2p
cp "$classifier/config.json" .carry/cnn_fashion_classifier/
newest=$(ls "$classifier/checkpoints" | sort -n | tail -1)
rm -rf ".carry/cnn_fashion_classifier/checkpoints/$newest"
cp -r "$classifier/checkpoints/$newest" .carry/cnn_fashion_classifier/checkpoints/
du -sh .whl .carry
