#!/usr/bin/env bash
# Set up the environment (first run only), build the O2-MNIST demo dataset (first run only), and
# run the main job on it. Output is shown and saved to logs/run.log.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh
mkdir -p logs
{
    if [ ! -f data/o2_mnist/X_train.sav ]; then
        "$PY" data/generate_o2mnist.py
    fi
    "$PY" -m data.summary data/o2_mnist
} 2>&1 | tee logs/run.log
