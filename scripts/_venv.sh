# Sourced by the scripts: create .venv beside the checkout if needed and activate it.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip
# Tests and benchmarks measure one process: keep BLAS single-threaded; numba uses both cores.
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS="${NUMBA_NUM_THREADS:-2}" MPLBACKEND=Agg
