#!/usr/bin/env bash
# GPU readiness in one call (issue 15): the multi-crop DINO ViT-S/16 224/96 model step in bf16 with fused AdamW,
# eager and torch.compile, then a DDP smoke test (torchrun -m vitssl pretrain, NCCL) over the GPUs present; writes
# one results file, $OUT/gpu.md when OUT is set, else benchmarks/results/gpu/gpu.md. See benchmarks/gpu.py.
#
#   bash benchmarks/gpu.sh                # on the GPU machine (about 5 minutes on one H200)
#   bash benchmarks/gpu.sh --dry-run      # anywhere: the same code paths on CPU at toy sizes (gloo, aot_eager)
#   bash benchmarks/gpu.sh --help         # every option (batch, steps, compile backend, --skip-ddp, ...)
#
# What it assumes (nothing is downloaded; the machine needs no internet):
# - A Python with vitssl's dependencies installed (torch with CUDA, torchvision, timm, numpy, pillow, pyyaml, tqdm,
#   tensorboard, matplotlib, safetensors, webdataset, braceexpand, torchmetrics, pycocotools): $PYTHON if set,
#   else .venv/bin/python if present, else python3.
# - vitssl itself importable. If it is not, this script tries an offline editable install
#   (pip install --no-index --no-deps --no-build-isolation -e ., which needs setuptools and wheel already there),
#   and failing that puts src/ on PYTHONPATH (vitssl is pure Python; torchrun's processes inherit it).
# - The data: the built-in synthetic set, generated offline into ~/.cache/vitssl on first use (or --data FOLDER).
# - A C/C++ compiler for torch.compile's inductor backend (a failed compile is reported in the file; the rest runs).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n "${PYTHON:-}" ]]; then
    py="$PYTHON"
elif [[ -x .venv/bin/python ]]; then
    py=.venv/bin/python
else
    py=python3
fi

if ! "$py" -c "import vitssl" 2>/dev/null; then
    echo "gpu.sh: vitssl is not importable with $py; trying an offline editable install" >&2
    log=$(mktemp)
    if ! "$py" -m pip install --quiet --no-index --no-deps --no-build-isolation -e . >"$log" 2>&1; then
        echo "gpu.sh: offline install failed ($(grep -m1 -i error "$log" || true)); using src/ on PYTHONPATH" >&2
        export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
    fi
    rm -f "$log"
fi

"$py" -c "import torch; print(f'gpu.sh: {torch.__version__}, CUDA available: {torch.cuda.is_available()}', flush=True)" >&2
exec "$py" benchmarks/gpu.py "$@"
