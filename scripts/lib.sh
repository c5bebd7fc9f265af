# Shared set-up for scripts/test and scripts/demo: a virtualenv with the project installed,
# and the Debian packages a command needs. Sourced, not run.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GATEWAY_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

pick_python() {
    local candidate
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return
        fi
    done
    echo "error: Python 3.11 or newer is required" >&2
    exit 1
}

# Create the virtualenv and install the project with the given extras; reinstall only when
# pyproject.toml or the extras changed since the last install.
ensure_python_env() {
    local extras="$1" stamp want
    if [[ ! -x "$PY" ]]; then
        log "creating virtualenv $VENV"
        "$(pick_python)" -m venv "$VENV"
    fi
    stamp="$VENV/.gateway-install"
    want="$extras $(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
        log "installing django-protocol-gateway[$extras]"
        "$PY" -m pip install --quiet --disable-pip-version-check --upgrade pip
        "$PY" -m pip install --quiet --disable-pip-version-check -e "$ROOT[$extras]"
        echo "$want" >"$stamp"
    fi
}

# Install missing Debian packages (the tests start their own servers from these binaries).
ensure_debian_packages() {
    local missing=() pkg sudo=""
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    log "installing Debian packages: ${missing[*]}"
    if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
        echo "warning: could not install ${missing[*]}; tests that need them will fail" >&2
    fi
}
