#!/usr/bin/env bash
# The CUDA checks in one run, for a machine with a CUDA GPU (BENCHMARKS.md records the figures):
# the tests that need CUDA (training in float32 and bf16, exported embedding, registration, and
# torchrun with NCCL where there are 2 GPUs), then the registration and training speed benchmarks.
#
#   bash scripts/gpu_checks.sh [PYTHON]
#
# The machine needs torch (CUDA), scipy, scikit-image, scikit-learn and pytest. Where it cannot
# reach a package registry, prepare the rest on a machine that can, in the repository root:
#   .venv/bin/pip install --no-deps --target .gpu_deps e2cnn==0.2.3 sympy mpmath tqdm hypothesis sortedcontainers attrs
# and bring .gpu_deps along (the device tool: carry=[".gpu_deps"]). wandb is not needed: the
# runs here log nowhere (WANDB_MODE=disabled).
set -euo pipefail
python=${1:-python}
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/.gpu_deps:$PWD${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=disabled
"$python" - <<'EOF'
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s):",
      [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
assert torch.cuda.is_available(), "no CUDA GPU here"
EOF
"$python" -m pytest -q -m "" -p no:cacheprovider -rs \
    tests/test_distributed.py tests/test_registration.py -k "cuda or nccl or bf16"
"$python" benchmarks/bench_registration.py --device cuda --sizes 32 64 128 --batches 512 4096
"$python" benchmarks/bench_training.py speed --device cuda
