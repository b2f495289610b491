#!/usr/bin/env bash
# The issue-3 experiments in order, on an otherwise idle machine (the GANs need the classifier):
#   bash experiments/run_images.sh   (~85 min on 2 cores; logs in logs/)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p logs
PY=${PYTHON:-.venv/bin/python}
$PY experiments/cnn_fashion.py --preset cpu > logs/cnn_fashion__cpu.log 2>&1
$PY experiments/gans_fashion.py > logs/gans_fashion.log 2>&1
$PY experiments/unet_fashion_scenes.py --preset cpu > logs/unet_fashion_scenes__cpu.log 2>&1
$PY experiments/cnn_fashion.py --preset seed > logs/cnn_fashion__seed.log 2>&1
