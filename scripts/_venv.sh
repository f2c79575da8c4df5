# Sourced by scripts/test and scripts/demo: make .venv hold the project with an extra.
#
#   ensure_venv EXTRA
#
# Creates .venv with $PYTHON (default python3) if it is missing, then installs the
# project in editable mode with EXTRA ('test' or 'testing'), saying what it does,
# a line per phase, on stderr. A stamp file in .venv records a hash of
# pyproject.toml, the venv's Python version and the extras installed; when they
# have not changed, the install is skipped (the source is installed editable, so
# editing it needs no reinstall). Delete .venv to start over.

ensure_venv() {
    local extra="$1"
    local python="${PYTHON:-python3}"
    local stamp=.venv/.httpx-tokenauth-install
    if [ ! -x .venv/bin/python ]; then
        echo "== creating .venv with $python ($("$python" --version 2>&1))" >&2
        "$python" -m venv .venv
        rm -f "$stamp"
    fi
    local state
    state="$(.venv/bin/python -c 'import hashlib, sys
print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest(), sys.version.split()[0])')"
    # The test extra includes the testing extra: an install for 'test' serves both.
    if [ -f "$stamp" ]; then
        local line
        while IFS= read -r line; do
            if [ "$line" = "$state test" ] || [ "$line" = "$state $extra" ]; then
                echo "== .venv is up to date (pyproject.toml unchanged): not reinstalling" >&2
                return 0
            fi
        done < "$stamp"
    fi
    echo "== upgrading pip in .venv" >&2
    .venv/bin/python -m pip install --quiet --upgrade pip
    echo "== installing the project and its $extra extra (pip install -e '.[$extra]')" >&2
    .venv/bin/python -m pip install --quiet -e ".[$extra]"
    echo "$state $extra" > "$stamp"
}
