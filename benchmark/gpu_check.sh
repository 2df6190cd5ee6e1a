#!/usr/bin/env bash
# Every GPU check of issue 19 in one unattended call: install, environment, GPU tests, benchmarks at 256x256, the
# three targets, and a study run at the paper's resolution sized to the time left. Everything goes into OUT_DIR.
#
#   benchmark/gpu_check.sh OUT_DIR
#
# Environment:
#   GPU_CHECK_DEVICE  cuda (default) | cpu: the CPU dry run (tiny sizes, same stages, same output tree, ~1 min)
#   GPU_CHECK_BUDGET  seconds for the whole script (default 330 on cuda, 240 on cpu); each stage gets a share
#                     and is stopped by `timeout` so that one slow stage cannot eat the others
#   GPU_CHECK_RUN     scratch folder of the study run (default /tmp/gpu_check_run; its weights stay there)
#
# Output tree (OUT_DIR):
#   SUMMARY.md          stages (status, seconds), targets, study plan, environment: read this first
#   environment.txt     GPU name, driver, CUDA, torch, cuDNN, Python, nvidia-smi; environment.json the same
#   tests.log           the gpu-marked tests (pytest -m gpu); tests.xml (JUnit)
#   bench/              train_step, eval_sweep, new_lam (.csv, .md), targets (.md, .json), plan.json
#   study/              report.md, figures/, results.csv, costs.csv, search*.csv, summary.json, run.json, config.json
#   logs/               one log per stage
# A stage that fails or times out is marked so in SUMMARY.md; the script carries on and exits 0 when it finished
# (1 when a stage failed), so whatever was measured comes back.
set -u
OUT=${1:?usage: benchmark/gpu_check.sh OUT_DIR}
cd "$(dirname "$0")/.."
ROOT=$PWD
DEVICE=${GPU_CHECK_DEVICE:-cuda}
RUN=${GPU_CHECK_RUN:-/tmp/gpu_check_run}
SITE=/tmp/gpu_check_site  # wheels installed here (PYTHONPATH), not into the image's environment
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT/bench" "$OUT/study" "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
START=$(date +%s)
rm -f "$SITE/.gpu_check_ok"

if [ "$DEVICE" = cpu ]; then
    BUDGET=${GPU_CHECK_BUDGET:-240}
    SIZE=32; BATCH=4; REPEATS=2; WARMUP=1; LAT_REPEATS=5; LAMS=4
    STUDY_ARGS=(--profile smoke --set data.image_size=32)
    PLAN_ARGS=(--size 32 --min-steps 4 --max-steps 4 --overhead 1.0)
    STUDY_EXTRA=(--set evaluation.grid_points=3 --set evaluation.n_test=4 --set search.budget=3)  # after the plan
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
else
    BUDGET=${GPU_CHECK_BUDGET:-330}
    SIZE=256; BATCH=32; REPEATS=20; WARMUP=3; LAT_REPEATS=200; LAMS=16
    STUDY_ARGS=(--profile paper)
    PLAN_ARGS=(--size 256 --min-steps 200 --max-steps 5000)
    STUDY_EXTRA=()
fi
MODELS=unet,hyper-S,hyper-M,hyper-L,film
STATUS=()

left() { echo $(( START + BUDGET - $(date +%s) )); }

# stage NAME MAX_SECONDS RESERVE_SECONDS CMD...: run CMD under timeout min(MAX, time left - RESERVE).
stage() {
    local name=$1 max=$2 reserve=$3; shift 3
    local avail=$(( $(left) - reserve )) t0 rc
    (( avail < max )) && max=$avail
    if (( max < 5 )); then
        STATUS+=("| $name | skipped (no time left) | 0 |"); echo "== $name: skipped"; return 1
    fi
    echo "== $name (at most ${max}s)"
    t0=$(date +%s)
    # the stage runs in a child bash (timeout cannot run a function) that gets this script's functions and settings
    timeout --kill-after=10 "$max" bash -c "$(declare -f install environment gpu_tests bench study collect)
        $(declare -p OUT ROOT DEVICE RUN PY SITE SIZE BATCH MODELS STUDY_ARGS PLAN_ARGS STUDY_EXTRA); \"\$@\"" _ "$@" \
        >"$OUT/logs/$name.log" 2>&1
    rc=$?
    local took=$(( $(date +%s) - t0 )) what=ok
    (( rc == 124 || rc == 137 )) && what="timed out after ${max}s"
    (( rc != 0 && rc != 124 && rc != 137 )) && what="failed (exit $rc)"
    STATUS+=("| $name | $what | $took |")
    echo "   $what in ${took}s"; tail -n 3 "$OUT/logs/$name.log" | sed 's/^/   /'
    return $rc
}

install() {
    # The device lacks optuna, nilearn, nibabel, pydantic, ...: wheels from .whl/ (benchmark/gpu_wheels.sh).
    if "$PY" -c "import optuna, nilearn, nibabel, hyperrecon.cli" 2>/dev/null; then
        echo "everything importable already"; return 0
    fi
    rm -rf "$SITE"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
        || return 1
    # the project itself, built from this tree with the image's setuptools; else it runs from the source tree
    if ! PYTHONPATH=$SITE "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir \
            --target "$SITE" "$ROOT"; then
        echo "project build failed: running from the source tree"
    fi
    PYTHONPATH=$SITE:$ROOT "$PY" -c "import optuna, nilearn, nibabel, hyperrecon.cli; print('imports ok')" \
        && touch "$SITE/.gpu_check_ok"
}

environment() {
    { echo "date: $(date -u +%FT%TZ)"; echo "host: $(hostname)"; uname -a
      echo; echo "## nvidia-smi"; nvidia-smi 2>&1 || echo "(nvidia-smi not available)"
      echo; echo "## nvidia-smi -q (clocks, power)"
      nvidia-smi -q -d CLOCK,POWER,PERFORMANCE 2>&1 | head -80 || true
    } >"$OUT/environment.txt"
    "$PY" - "$OUT/environment.json" "$DEVICE" >>"$OUT/environment.txt" <<'EOF'
import json, platform, subprocess, sys
import torch
info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": sys.argv[2], "cuda_available": torch.cuda.is_available()}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=p.name, capability=f"{p.major}.{p.minor}", gpu_memory_gib=round(p.total_memory / 2**30, 1),
                multiprocessors=p.multi_processor_count)
    try:
        info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                        capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        info["driver"] = None
try:
    import hyperrecon.accel as a
    info["hrbench_precision_auto"] = __import__("hyperrecon.resolve", fromlist=["x"]).resolve_precision(
        "auto", "cuda" if torch.cuda.is_available() else "cpu")
except Exception as exc:  # reported, not fatal
    info["hrbench_precision_auto"] = f"error: {exc}"
json.dump(info, open(sys.argv[1], "w"), indent=2)
print("\n## python / torch"); print(json.dumps(info, indent=2))
EOF
}

gpu_tests() {
    # only the files with gpu-marked tests: other test files may import tools the device lacks (selenium, ...);
    # not the slow smoke study: the study stage below runs a larger one on the GPU
    local files; files=$(grep -l "mark.gpu" tests/test_*.py)
    "$PY" -m pytest -q -m "gpu and not slow" -p no:cacheprovider -o addopts="" -rA --junitxml="$OUT/tests.xml" $files \
        2>&1 | tee "$OUT/tests.log"
    return "${PIPESTATUS[0]}"
}

bench() {
    local script=$1; shift
    "$PY" "benchmark/$script.py" --device "$DEVICE" --sizes "$SIZE" --models "$MODELS" --precisions fp32,bf16 \
        --out "$OUT/bench/$script" "$@"
}

study() {
    local overrides=() line
    while IFS= read -r line; do [ -n "$line" ] && overrides+=(--set "$line"); done \
        < <("$PY" benchmark/gpu_study_plan.py --steps-csv "$OUT/bench/train_step.csv" --budget "$1" \
            "${PLAN_ARGS[@]}" --out "$OUT/bench/plan")
    (( ${#overrides[@]} )) || { echo "no plan (train_step.csv missing?)"; return 1; }
    rm -rf "$RUN"
    echo "hrbench run --study studies/sl-brain-cs.toml ${STUDY_ARGS[*]} ${overrides[*]} ${STUDY_EXTRA[*]-}" \
         "--device $DEVICE"
    "$PY" -m hyperrecon.cli run --study studies/sl-brain-cs.toml "${STUDY_ARGS[@]}" "${overrides[@]}" \
        ${STUDY_EXTRA[@]+"${STUDY_EXTRA[@]}"} \
        --device "$DEVICE" --out "$RUN" --json >"$OUT/study/run-summary.json"
}

collect() {
    # the report and its tables and figures (not the weights: they stay in $RUN)
    [ -d "$RUN" ] || return 1
    if [ ! -f "$RUN/report.md" ] && [ -f "$RUN/summary.json" ]; then "$PY" -m hyperrecon.cli report "$RUN"; fi
    for f in report.md results.csv costs.csv search.csv search_summary.csv summary.json run.json config.json \
             scales.json convergence.csv metrics.csv dice_reference.csv; do
        [ -f "$RUN/$f" ] && cp "$RUN/$f" "$OUT/study/"
    done
    [ -d "$RUN/figures" ] && cp -r "$RUN/figures" "$OUT/study/"
    mkdir -p "$OUT/study/jobs" && cp "$RUN"/jobs/*.json "$OUT/study/jobs/" 2>/dev/null
    [ -f "$OUT/study/report.md" ]
}

FAILED=0
stage install 120 200 install || FAILED=1
[ -f "$SITE/.gpu_check_ok" ] && export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$ROOT
stage environment 30 200 environment || FAILED=1
stage tests 90 180 gpu_tests || FAILED=1
stage train_step 75 150 bench train_step --batch "$BATCH" --repeats "$REPEATS" --warmup "$WARMUP" --groups 4 \
    --wait-quiet 0 --retries 0 || FAILED=1
stage eval_sweep 45 120 bench eval_sweep --batch "$BATCH" --lams "$LAMS" --repeats "$REPEATS" --warmup "$WARMUP" \
    --wait-quiet 0 --retries 0 || FAILED=1
stage new_lam 45 110 bench new_lam --repeats "$LAT_REPEATS" --warmup 10 || FAILED=1
stage targets 20 100 "$PY" benchmark/gpu_targets.py --dir "$OUT/bench" --size "$SIZE" --out "$OUT/bench/targets" \
    || FAILED=1
# the study: training gets ~45% of the time left; evaluation, search and the report the rest
STUDY_MAX=$(( $(left) - 25 ))
TRAIN_BUDGET=$(( STUDY_MAX * 45 / 100 ))
stage study "$STUDY_MAX" 25 study "$TRAIN_BUDGET" || FAILED=1
stage collect 20 0 collect || FAILED=1

{
    echo "# GPU check ($DEVICE, $(date -u +%F))"; echo
    echo "Script: \`benchmark/gpu_check.sh\`, budget ${BUDGET}s, took $(( $(date +%s) - START ))s."; echo
    echo "| stage | status | seconds |"; echo "|---|---|---|"; printf '%s\n' "${STATUS[@]}"; echo
    [ -f "$OUT/bench/targets.md" ] && sed 's/^# /## /' "$OUT/bench/targets.md" && echo
    [ -f "$OUT/study/costs.csv" ] && "$PY" - "$OUT/study/costs.csv" <<'EOF'
import sys
import pandas as pd
c = pd.read_csv(sys.argv[1])
peak = c["peak_memory_mib" if "peak_memory_mib" in c else "peak_memory_mb"]
ev = c["eval_peak_memory_mib"].max() if "eval_peak_memory_mib" in c else float("nan")
print("## Study run\n")
print(f"{len(c)} cost rows on {', '.join(map(str, sorted(set(c.device))))} in {', '.join(sorted(set(c.dtype)))}; "
      f"steps per model {int(c.steps.max())}; training device time {c.device_seconds.sum():.1f} s in all; "
      f"largest peak memory: training {peak.max():.0f} MiB, evaluation {ev:.0f} MiB. Report: study/report.md.\n")
EOF
    [ -f "$OUT/bench/plan.json" ] && { echo "## Study plan (steps per model from the measured step times)"; echo
        echo '```json'; cat "$OUT/bench/plan.json"; echo '```'; echo; }
    echo "## Environment"; echo; echo '```'
    [ -f "$OUT/environment.json" ] && cat "$OUT/environment.json"; echo; echo '```'
} >"$OUT/SUMMARY.md"
cat "$OUT/SUMMARY.md"
exit $FAILED
