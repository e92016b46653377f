#!/usr/bin/env bash
# GPU readiness check (issue 12), one command from a clean checkout:
#   bash scripts/gpu_check.sh            # on a GPU machine: GPU tests, then the speed table (under 8 minutes)
#   bash scripts/gpu_check.sh --quick    # the same with a short CPU part (always so without CUDA)
#
# 1. Python: uses $PYTHON (default python3) when it already imports everything the check needs. Otherwise, if
#    a package index answers, it makes a venv in $GPU_CHECK_VENV (default /tmp/denoiser-gpu-venv) and installs
#    requirements-test.txt there; a torch that is already installed (e.g. a machine image's CUDA build) is
#    kept, not replaced by the pinned one. With no index, the missing packages are installed from the wheels
#    in $GPU_CHECK_WHEELS (default .whl) if that folder exists; failing that it goes on with what is there,
#    and the parts that need a missing package say so (on a machine with no gradio, the app row is skipped).
# 2. The GPU tests (tests/test_gpu.py): without CUDA they are skipped, with their reason shown.
# 3. The speed table (python -m benchmarks.gpu): GPU against this machine's CPU, printed as Markdown and
#    written to benchmark-results/gpu-check/results.md (git-ignored). Data: ../shared/data/cifar10-images.zip
#    when it is there ($GPU_CHECK_DATA overrides), else generated 32x32 images.
# With no CUDA GPU it is a dry run: the GPU parts are skipped, the CPU rows are measured, and it exits 0.
set -uo pipefail
cd "$(dirname "$0")/.."

QUICK=()
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=(--quick) ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

START=$SECONDS
OUT=benchmark-results/gpu-check
mkdir -p "$OUT"
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || PY=python
say() { printf '\n== %s (%ds)\n' "$1" "$((SECONDS - START))"; }

# Import names of what the tests and the table use (requirements.txt, requirements-test.txt).
MODULES="torch torchvision numpy PIL safetensors huggingface_hub torchmetrics tqdm matplotlib pytest pytest_timeout gradio gradio_client"
missing_modules() {
  "$1" - $MODULES <<'EOF'
import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
EOF
}

index_answers() {  # a real download of one small pinned requirement, through pip's own settings
  local probe
  probe=$(mktemp -d)
  timeout 40 "$PY" -m pip download --quiet --no-deps --no-cache-dir --retries 0 --timeout 10 -d "$probe" \
    "$(grep -m1 '^tqdm==' requirements.txt)" >/dev/null 2>&1
  local status=$?
  rm -rf "$probe"
  return $status
}

pinned() {  # the pinned requirement lines of these import names, from the requirement files
  local name
  for name in "$@"; do
    case "$name" in PIL) name=pillow ;; pytest_timeout) name=pytest-timeout ;; esac
    grep -h -i -m1 -E "^${name}==" requirements.txt requirements-test.txt
  done
}

make_venv() {  # $1: extra pip arguments; the rest: what to install. Sets PY to the venv's python.
  local venv=${GPU_CHECK_VENV:-/tmp/denoiser-gpu-venv} pip_args=$1
  shift
  "$PY" -m venv --system-site-packages "$venv" || return 1
  if "$PY" -c 'import torch' 2>/dev/null; then
    # Keep the torch already installed (a venv of its own, too): its folder goes on the new venv's path,
    # after the venv's own packages, so pip counts what is there as installed.
    "$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
      > "$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/_outer_site.pth"
  fi
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install --quiet $pip_args "$@" || return 1
  PY=$venv/bin/python
}

say "Python environment"
MISSING=$(missing_modules "$PY")
if [ -z "$MISSING" ]; then
  echo "$($PY -c 'import sys; print(sys.executable)') already has every package the check needs: no install."
elif index_answers; then
  echo "missing: $MISSING. A package index answers: installing requirements-test.txt into a venv."
  if "$PY" -c 'import torch' 2>/dev/null; then
    # torch is there (a machine image's CUDA build): keep it rather than the pinned one.
    REQ=$(mktemp)
    cat requirements.txt requirements-test.txt | grep -v -E '^(-r |torch==|torchvision==)' > "$REQ"
  else
    REQ=requirements-test.txt
  fi
  make_venv "" -r "$REQ" || echo "pip install failed: going on with $PY as it is." >&2
elif [ -d "${GPU_CHECK_WHEELS:-.whl}" ]; then
  WHEELS=${GPU_CHECK_WHEELS:-.whl}
  echo "missing: $MISSING. No package index answers: installing them from the wheels in $WHEELS."
  # shellcheck disable=SC2046,SC2086
  make_venv "--no-index --find-links $WHEELS" $(pinned $MISSING) ||
    echo "install from $WHEELS failed: going on as it is." >&2
else
  echo "missing: $MISSING. No package index answers and there is no wheel folder: going on without them."
fi
MISSING=$(missing_modules "$PY")
[ -n "$MISSING" ] && echo "still missing: $MISSING (the parts that need them are skipped)"
if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "gpu_check.sh: torch cannot be imported with $PY: nothing can be checked." >&2
  exit 1
fi
"$PY" - <<'EOF'
import torch
cuda = torch.cuda.is_available()
print(f"torch {torch.__version__}, CUDA {'available: ' + torch.cuda.get_device_name() if cuda else 'not available'}")
EOF
HAS_CUDA=$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))')
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

say "GPU tests (tests/test_gpu.py)"
TESTS=0
if "$PY" -c 'import pytest' 2>/dev/null; then
  timeout 210 "$PY" -m pytest -q -rs tests/test_gpu.py 2>&1 | tee "$OUT/tests.log"
  TESTS=${PIPESTATUS[0]}
else
  echo "pytest is not installed: GPU tests not run." | tee "$OUT/tests.log"
  [ "$HAS_CUDA" = 1 ] && TESTS=1
fi

say "Speed table (python -m benchmarks.gpu)"
if [ "$HAS_CUDA" != 1 ] && [ ${#QUICK[@]} -eq 0 ]; then
  QUICK=(--quick)
  echo "no CUDA GPU: the CPU rows run in --quick mode (fewer images, no 4.2 MP image on the CPU)"
fi
DATA=${GPU_CHECK_DATA:-../shared/data/cifar10-images.zip}
[ -e "$DATA" ] || DATA=synthetic
echo "data: $DATA"
# Its progress bars and training log go to bench.log; the table is printed from results.md.
rm -f "$OUT/results.md"
timeout 240 "$PY" -m benchmarks.gpu --data "$DATA" --out "$OUT" "${QUICK[@]}" > "$OUT/bench.log" 2>&1
BENCH=$?
if [ -f "$OUT/results.md" ]; then echo; cat "$OUT/results.md"; fi
[ "$BENCH" -ne 0 ] && { echo "benchmarks.gpu exited $BENCH; the end of $OUT/bench.log:"; tail -n 20 "$OUT/bench.log"; } >&2

say "Done"
if [ "$HAS_CUDA" != 1 ]; then
  echo "No CUDA GPU on this machine: this was a dry run. The GPU tests were skipped and the GPU column is empty;"
  echo "the CPU rows above were measured. Run the same command on a GPU machine for the GPU figures."
fi
echo "tests: exit $TESTS; table: exit $BENCH; results in $OUT/ (results.md, results.json, tests.log, bench.log)"
[ "$TESTS" -eq 0 ] && [ "$BENCH" -eq 0 ]
