#!/usr/bin/env bash
# The GPU path checked and timed in one run, on a machine with a CUDA GPU and no network:
#
#   bash benchmarks/gpu_check.sh [WHEELS] [OUT]     (PYTHON=... for another interpreter)
#
# WHEELS: a folder of wheels for what the machine lacks (rasterio, rioxarray, pyproj, affine,
# richdem2, xarray-sentinel, jsonargparse, dask and distributed, and what they need), made
# where pip reaches PyPI with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d WHEELS NAME==VERSION
# and installed here with --no-index; none: the environment as it is. sarheight itself is
# installed from this tree (editable, offline) where it is not importable yet. OUT: where
# the JSON and the log go (default benchmarks/kernel_door). PYTHON: the interpreter
# (default python3).
#
# 1. the kernels compiled (sarheight compile), so that no timing holds a compilation;
# 2. the kernel door's parity tests (tests/kernels/test_kernel_door.py, test_torch_footprints.py,
#    test_torch_sweep.py): every torch pass held to its numba kernel on the CPU and, where
#    torch sees one, on the GPU;
# 3. the geocoding benchmark, the torch pass on the GPU beside the numba kernels on the
#    machine's cores, in one run (the card named in its JSON);
# 4. where there is a GPU, `sarheight benchmark --device cuda`: simulate and reconstruct on
#    it (every pass in torch; a sweep too large for it on the CPU's kernels, as the JSON's
#    computed_on says) beside the CPU, run by run;
# 5. the sweep on each backend (benchmarks/sweep_backends.py), and training scenes drawn
#    fresh (benchmarks/drawn_scenes.py): seconds a scene with the physics on the GPU beside
#    the numba kernels, and a short training on drawn scenes (tests/learning/test_data_drawn.py).
# Without a GPU it runs the same on the CPU and says that the GPU's figures wait for one.
set -euo pipefail
cd "$(dirname "$0")/.."
wheels=${1:-}
out=${2:-benchmarks/kernel_door}
mkdir -p "$out" && out=$(cd "$out" && pwd)
python=${PYTHON:-python3}
case $python in */*) python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")" ;; esac
if [ -n "$wheels" ]; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir "$wheels"/*.whl
fi
if ! "$python" -c "import sarheight.kernels" 2>/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-build-isolation -e .
fi
export PYTHONUNBUFFERED=1
started=$(date +%s)
device=$("$python" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
card=$("$python" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')")
echo "gpu_check: torch sees: $card"
"$python" -m sarheight compile
"$python" -m pytest -q -p no:cacheprovider tests/kernels/test_kernel_door.py tests/kernels/test_torch_footprints.py \
    tests/kernels/test_torch_sweep.py 2>&1 | tee "$out/gpu_check_parity.log"
sizes=$([ "$device" = cuda ] && echo 1024,2048,4096 || echo 512,1024)
(cd benchmarks && "$python" geocode.py --sizes "$sizes" --device "$device" --out "$out/geocode_$device.json")
if [ "$device" = cuda ]; then
    "$python" -m sarheight benchmark --side 1024 --coarse-side 512 --repeats 3 --no-peer --device cuda \
        --out "$out/benchmark_cuda.json"
fi
(cd benchmarks && "$python" sweep_backends.py --sides "$([ "$device" = cuda ] && echo 256,512,1024 || echo 128,256)" \
    --out "$out/sweep_$device.json")
(cd benchmarks && "$python" drawn_scenes.py --scenes 8 --out "$out/drawn_scenes_$device.json")
"$python" -m pytest -q -p no:cacheprovider tests/learning/test_data_drawn.py 2>&1 | tail -3
if [ "$device" = cpu ]; then
    echo "gpu_check: no GPU here: the torch passes ran on the CPU; the GPU's figures wait for a machine with one"
fi
echo "gpu_check: done in $(( $(date +%s) - started )) s; $out/geocode_$device.json, $out/sweep_$device.json, $out/drawn_scenes_$device.json$([ "$device" = cuda ] && echo " and $out/benchmark_cuda.json")"
