#!/usr/bin/env bash
# Set up the environment and the O2-MNIST demo data (first run only), then train the default
# O2-VAE config. Extra arguments are config overrides, e.g.: bash run.bash training.epochs=2
# The output is shown and saved to logs/run.log.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh
mkdir -p logs
{
    if [ ! -f data/o2_mnist/X_train.sav ]; then
        "$PY" data/generate_o2mnist.py
    fi
    "$PY" run.py configs.config_o2mnist "$@"
} 2>&1 | tee logs/run.log
exit "${PIPESTATUS[0]}"
