#!/usr/bin/env bash
# The one prepared GPU run (benchmarks/gpu.py): at most about 8 minutes on one H100 or H200.
#   bash benchmarks/gpu.sh                     # writes benchmarks/results/gpu/gpu.json with its provenance
#   PYTHON=python3 bash benchmarks/gpu.sh      # another interpreter (one with a CUDA build of torch)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
exec timeout 480 "$PYTHON" benchmarks/gpu.py "$@"
