# Sourced by scripts/demo, scripts/lint and scripts/test: make .venv if missing and install the project into it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV" >&2
    "$PYTHON" -m venv "$VENV"
fi
install_project() {  # $1: the extras, e.g. "[test]" or ""
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT$1"
}
