#!/usr/bin/env bash
# unixODBC + FreeTDS ODBC driver for dpone-state's mssql+pyodbc tests.
#
# Usage: scripts/services/odbc.sh ensure|install|check
#
#   ensure   what `make test` runs: the system part of `install` (packages, driver
#            registration) when something is missing; a no-op when all is there.
#            Without root it only says what is missing (those tests then skip, or
#            fail under CI=true, with the same advice)
#   install  apt-installs unixodbc (libodbc.so.2, which the pyodbc wheel links
#            against), unixodbc-dev (headers, only needed if pyodbc ever builds
#            from source) and tdsodbc (FreeTDS driver); makes sure the driver is
#            registered in /etc/odbcinst.ini as [FreeTDS]; creates the scratch
#            venv .services/odbc-venv with pyodbc for `check`
#   check    verifies: odbcinst lists FreeTDS, `import pyodbc` works and
#            pyodbc.drivers() lists FreeTDS, and the driver library actually loads
#            (a connect to a closed local port must fail with FreeTDS's 08S01
#            "Unable to connect" error, not with an "IM002"/"can't open lib" one)
#
# Needs root (apt-get, /etc/odbcinst.ini). No SQL Server is involved: Microsoft's
# msodbcsql18 is not in Debian's repositories and is not used.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SERVICES_DIR="$ROOT/.services"
VENV="$SERVICES_DIR/odbc-venv"
PYTHON="${PYTHON:-python3}"
PACKAGES=(unixodbc unixodbc-dev tdsodbc)
DRIVER_NAME=FreeTDS

log() { echo "odbc: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

pkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

driver_registered() {
    command -v odbcinst >/dev/null && odbcinst -q -d -n "$DRIVER_NAME" >/dev/null 2>&1
}

apt_install() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        pkg_installed "$p" || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    [[ $EUID -eq 0 ]] || die "need root to apt-get install ${missing[*]}"
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; then
        log "install failed; running apt-get update and retrying"
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

register_driver() {
    driver_registered && return 0
    # Debian's tdsodbc registers [FreeTDS] itself (postinst runs odbcinst -i with
    # /usr/share/tdsodbc/odbcinst.ini); this is the fallback if that did not happen.
    local lib tmpl
    lib="$(dpkg -L tdsodbc | grep -E '/libtdsodbc\.so$' | head -n 1)"
    [[ -n "$lib" && -f "$lib" ]] || die "libtdsodbc.so not found in package tdsodbc"
    log "registering $DRIVER_NAME driver ($lib) in /etc/odbcinst.ini"
    tmpl="$(mktemp)"
    printf '[%s]\nDescription=FreeTDS ODBC driver (MS SQL Server, Sybase)\nDriver=%s\n' \
        "$DRIVER_NAME" "$lib" >"$tmpl"
    odbcinst -i -d -f "$tmpl" >/dev/null
    rm -f "$tmpl"
    driver_registered || die "$DRIVER_NAME still not listed by odbcinst -q -d"
}

ensure_venv() {
    if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import pyodbc' 2>/dev/null; then
        return 0
    fi
    mkdir -p "$SERVICES_DIR"
    [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
    log "installing pyodbc into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check pyodbc
}

cmd_install() {
    apt_install
    register_driver
    ensure_venv
}

cmd_ensure() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        pkg_installed "$p" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)) && driver_registered; then
        return 0
    fi
    if [[ $EUID -ne 0 ]]; then
        log "missing ${missing[*]:-the $DRIVER_NAME driver registration}; as root: bash $0 install"
        return 0
    fi
    apt_install
    register_driver
    log "installed ${missing[*]:-}; $DRIVER_NAME registered"
}

cmd_check() {
    command -v odbcinst >/dev/null || die "odbcinst not found (run: $0 install)"
    odbcinst -q -d | grep -qx "\[$DRIVER_NAME\]" || die "odbcinst -q -d does not list [$DRIVER_NAME]"
    [[ -x "$VENV/bin/python" ]] || ensure_venv
    "$VENV/bin/python" - "$DRIVER_NAME" <<'EOF'
import socket, sys, time
import pyodbc  # ImportError "libodbc.so.2: cannot open shared object file" without unixodbc

name = sys.argv[1]
drivers = pyodbc.drivers()
print(f"odbc: pyodbc {pyodbc.version}, drivers {drivers}", file=sys.stderr)
if name not in drivers:
    sys.exit(f"odbc: ERROR: pyodbc.drivers() does not list {name}")

# Load the driver for real: connect to a port nothing listens on.
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
t = time.monotonic()
try:
    pyodbc.connect(f"DRIVER={{{name}}};SERVER=127.0.0.1;PORT={port};UID=sa;PWD=x;TDS_Version=7.4",
                   timeout=5)
except pyodbc.Error as e:
    state = e.args[0]
    if state != "08S01":
        sys.exit(f"odbc: ERROR: unexpected error from {name}: {e}")
    print(f"odbc: {name} driver loads; closed port fails with {state} in "
          f"{time.monotonic() - t:.2f}s", file=sys.stderr)
else:
    sys.exit("odbc: ERROR: connect to a closed port succeeded?!")
EOF
    log "OK"
}

case "${1:-}" in
    ensure) cmd_ensure ;;
    install) cmd_install ;;
    check) cmd_check ;;
    *)
        echo "usage: $0 ensure|install|check" >&2
        exit 2
        ;;
esac
