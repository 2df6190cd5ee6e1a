#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with the wheels the GPU machine lacks, for benchmark/gpu_check.sh to install offline.
#
# The device machine (docs: reports/gpu/README.md) has Python 3.12 with torch+CUDA, numpy, scipy, pandas,
# scikit-image, h5py, matplotlib, rich, typer, pytest, PyYAML, tqdm, jinja2/MarkupSafe, scikit-learn, requests, ...
# but not optuna (alembic, SQLAlchemy, colorlog, Mako), nilearn, nibabel or pydantic. This downloads those for
# CPython 3.12 on manylinux x86-64 without their dependencies (--no-deps), then checks that every requirement
# of every wheel (markers evaluated for that machine) is either in .whl/ or in DEVICE_HAS below, and that the
# folder stays well under the 64 MiB a device call may carry.
#
#   benchmark/gpu_wheels.sh            # from the repository root; needs pip and network access here
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.whl
PY=${PYTHON:-python3}
mkdir -p "$DEST"

# Version of a package installed here (the versions the test suite passed with), else empty (newest that fits).
pin() { "$PY" -c "import importlib.metadata as m, sys
try: print('==' + m.version(sys.argv[1]))
except m.PackageNotFoundError: print('')" "$1"; }

# What the device lacks (pure-Python ones and binary ones alike). Keep one version of each.
NEED=(optuna alembic SQLAlchemy colorlog Mako nilearn nibabel pydantic pydantic-core annotated-types
      typing-inspection typing-extensions typer)
# Packages the device image already has.
# Read off the image on 2026-11-17 (the workplace's device notes); the check below says if one went missing.
DEVICE_HAS="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax
llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13
nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless
optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip
pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core
scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson
six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision
tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug
wheel wrapt xarray xxhash yarl zipp"

specs=()
for n in "${NEED[@]}"; do specs+=("$n$(pin "$n")"); done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d "$DEST" "${specs[@]}"

"$PY" - "$DEST" "$DEVICE_HAS" <<'EOF'
import re, sys, zipfile
from pathlib import Path
from packaging.requirements import Requirement

dest, has = Path(sys.argv[1]), set(sys.argv[2].lower().replace("_", "-").split())
env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
       "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
wheels = sorted(dest.glob("*.whl"))
names = [norm(w.name.split("-")[0]) for w in wheels]
dupes = {n for n in names if names.count(n) > 1}
if dupes:
    sys.exit(f"error: {dest}: several versions of {', '.join(sorted(dupes))}; keep one of each")
missing = []
for w in wheels:
    with zipfile.ZipFile(w) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        for line in z.read(meta).decode().splitlines():
            if line.startswith("Requires-Dist:"):
                req = Requirement(line.split(":", 1)[1].strip())
                if req.marker is None or req.marker.evaluate(env):
                    if norm(req.name) not in names and norm(req.name) not in has:
                        missing.append(f"{w.name} needs {req}")
if missing:
    sys.exit("error: not in .whl and not on the device:\n  " + "\n  ".join(missing))
total = sum(w.stat().st_size for w in wheels) / 2**20
print(f"{len(wheels)} wheels, {total:.1f} MiB in {dest}/ (limit for a device call: 64 MiB with the tree)")
if total > 40:
    sys.exit("error: wheels take over 40 MiB; the working tree and the wheels must stay under 64 MiB together")
EOF
