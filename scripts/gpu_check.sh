#!/usr/bin/env bash
# Device checks for a lent GPU machine (no network): cheapest first, each step with its own timeout.
#
#   bash scripts/gpu_check.sh [SCENE_DIR]      # SCENE_DIR: optional scene for the train.py hook
#
# Expects the gsplat wheel in .whl/ (installed offline into /tmp/site). pytest, when the machine
# lacks it, is taken from a carried .venv/lib/python3*/site-packages (pure-Python packages only).
# Logs and JSON go to $OUT (default /tmp/gpu_check_out). Safe to run without CUDA: steps skip.
set -u
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
OUT="${OUT:-/tmp/gpu_check_out}"
PY="${PYTHON:-python3}"
SCENE="${1:-}"
mkdir -p "$OUT"
export TORCH_EXTENSIONS_DIR=/tmp/torch_ext TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="${MAX_JOBS:-16}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
declare -a SUMMARY=()

step() {  # step NAME TIMEOUT_S COMMAND...: run, log to $OUT/NAME.log, record status and seconds
  local name="$1" limit="$2"; shift 2
  local start=$SECONDS
  echo "=== $name (timeout ${limit}s)"
  timeout "$limit" "$@" > >(tee "$OUT/$name.log") 2>&1
  local rc=$?
  SUMMARY+=("$(printf '%-22s rc=%-4s %5ss' "$name" "$rc" "$((SECONDS - start))")")
  return $rc
}

# 1. Machine and torch.
step gpu_info 60 bash -c "nvidia-smi || echo 'nvidia-smi: not available'; $PY -c \"
import torch
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))
\""

# 2. Offline installs: gsplat from the carried wheel; pytest etc. from the carried venv if missing.
install_deps() {
  if ls .whl/*.whl > /dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && echo "gsplat wheel installed into /tmp/site"
  else
    echo "no wheel in .whl/: gsplat steps will skip"
  fi
  mkdir -p /tmp/shim
  for pkg in pytest _pytest pluggy iniconfig packaging pygments py.py; do
    if ! $PY -c "import ${pkg%.py}" 2> /dev/null; then
      for src in .venv/lib/python3*/site-packages/"$pkg"; do
        [ -e "$src" ] && ln -sfn "$REPO/$src" "/tmp/shim/$pkg" && echo "shim: $pkg"
      done
    fi
  done
}
step install 120 bash -c "$(declare -f install_deps); PY=$PY REPO=$REPO; install_deps"
export PYTHONPATH="/tmp/site:$PYTHONPATH:/tmp/shim"

# 3. gsplat's JIT kernels, built once (cached under $TORCH_EXTENSIONS_DIR).
step build_gsplat 480 $PY -c "
import time, torch
if not torch.cuda.is_available():
    print('skip: no CUDA'); raise SystemExit(0)
start = time.time()
from gsplat.cuda._backend import _C
print('gsplat kernels loaded:', _C is not None, f'in {time.time() - start:.1f}s')
raise SystemExit(0 if _C is not None else 1)
"

# 4. CUDA tests of every area (marker 'cuda' and files named *cuda*).
step pytest_cuda 300 $PY -m pytest -q -rs -m cuda --continue-on-collection-errors tests

# 5. gsplat vs torch backend on random scenes (numbers, not just pass/fail).
step compare_backends 180 $PY -c "
import json, os, torch
if not torch.cuda.is_available():
    print('skip: no CUDA'); raise SystemExit(0)
from gaussian_renderer import rasterize
from tests._raster_scenes import intrinsics, look_transform, random_scene
rows = []
for seed in range(4):
    scene = {k: v.cuda() for k, v in random_scene(20000, seed=seed).items()}
    args = (*scene.values(), look_transform(seed).cuda(), intrinsics(160, 120, shift=(2.5, -1.5)).cuda(), 160, 120)
    a = rasterize(*args, sh_degree=3, backend='gsplat')
    b = rasterize(*args, sh_degree=3, backend='torch')
    d = (a.image - b.image).abs().flatten().double()
    rows.append({'seed': seed, 'mean': d.mean().item(), 'p99.9': d.quantile(0.999).item(), 'max': d.max().item(),
                 'radii_mismatch': (a.radii != b.radii).float().mean().item()})
print(json.dumps(rows, indent=1))
json.dump(rows, open(os.path.join('$OUT', 'compare_backends.json'), 'w'), indent=1)
"

# 6. Speed: forward+backward on the 20k benchmark scene, gsplat vs our torch backend on CUDA.
for backend in gsplat torch; do
  step "bench_cuda_$backend" 240 bash -c "if $PY -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    $PY benchmarks/bench_rasterizer.py --device cuda --backend $backend --repeats 20 --case small | tee '$OUT/bench_cuda_$backend.json'
    else echo 'skip: no CUDA'; fi"
done

# 7. Hooks for other areas (each runs only if its entry point exists; SKIP_HOOKS=1 skips both).
if [ -z "${SKIP_HOOKS:-}" ] && [ -f benchmarks/bench_codec.py ]; then
  # the codec step at 1,000,000 Gaussians (target: <= 10 ms on CUDA)
  step bench_codec 300 $PY benchmarks/bench_codec.py --device cuda --n 1000000 --plan-n 0
fi
if [ -z "${SKIP_HOOKS:-}" ] && [ -f train.py ] && [ -n "$SCENE" ]; then
  # 2,000 iterations at full resolution through gsplat; the log prints the test PSNR at 2000
  step train_2000 600 bash -c "start=\$SECONDS; $PY train.py -s '$SCENE' -m /tmp/gpu_train --eval -r 1 \
    --backend gsplat --iterations 2000 --test_iterations 2000 --save_iterations 2000 --skip_compress \
    2>&1 | grep -E 'ITER|PSNR|Error|error' ; echo \"iterations/s: \$(python3 -c \"print(round(2000 / max(\$SECONDS - start, 1), 1))\")\""
fi

# 8. Summary.
{
  echo "step                   status  time"
  printf '%s\n' "${SUMMARY[@]}"
  for f in "$OUT"/bench_cuda_*.json; do
    [ -s "$f" ] && $PY -c "
import json, sys
r = json.load(open(sys.argv[1]))['small']
print(f\"{sys.argv[1].split('_')[-1][:-5]:>8}: 20k fwd {r['forward_s_median']*1e3:.2f} ms, fwd+bwd {r['forward_backward_s_median']*1e3:.2f} ms (median)\")
" "$f" 2> /dev/null
  done
} | tee "$OUT/summary.txt"
