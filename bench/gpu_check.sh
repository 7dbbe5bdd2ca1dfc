#!/usr/bin/env bash
# The checks that need a GPU, as one script for a lent GPU machine (see README, "GPU
# checks"). Wheels for packages the machine lacks are carried in .whl/. Writes logs to
# $OUT (or ./gpu-check-out) and prints a summary.
set -uo pipefail
OUT=${OUT:-gpu-check-out}; mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
echo "== CUDA tests"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_corruptions.py \
  -k "cuda or gpu or test_cuda" 2>&1 | tee "$OUT/pytest.log" | tail -15
echo "== headless on the GPU"
cat > /tmp/gpu_smoke.yaml <<'SPEC'
name: gpu-smoke
training: {epochs: 2, batch_size: 128, device: cuda}
validation: {sets: [clean, noise], severities: [3]}
analysis: {attribution: {methods: [integrated_gradients, layer_grad_cam]}}
members: [ResNext50_32.2, SqueezeNet, deit_tiny_p16_224]
SPEC
/usr/bin/time -v python3 -m ensui --home /tmp/gpu-home headless --spec /tmp/gpu_smoke.yaml \
  > "$OUT/smoke.txt" 2> "$OUT/smoke.err"; echo "exit $?"; tail -22 "$OUT/smoke.txt"
grep -E "Elapsed|Maximum resident" "$OUT/smoke.err"
echo "== integrated gradients throughput"
python3 bench/attribution.py --scale paper --images 16 --steps 32 --device cuda | tee "$OUT/ig.txt"
python3 bench/attribution.py --model deit_tiny_p16_224 --scale paper --images 16 --steps 32 \
  --device cuda | tee -a "$OUT/ig.txt"
