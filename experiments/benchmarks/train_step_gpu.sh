#!/usr/bin/env bash
# GPU run of the training-step benchmark (jrnn default / fused vs flax vs cuDNN torch),
# small and large configs. Needs jax[cuda] and a CUDA torch in the environment; writes
# results/train_step_gpu_{small,large}.txt. Usage: bash experiments/benchmarks/train_step_gpu.sh
set -euo pipefail
mkdir -p results
python -c "import jax; print(jax.devices())"
python -c "import torch; print(torch.__version__, torch.cuda.is_available())" || true
for cfg in small large; do
  python -m experiments.benchmarks.train_step --config "$cfg" --repeats 20 --warmup 3 \
    | tee "results/train_step_gpu_${cfg}.txt"
done
