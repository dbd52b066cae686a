#!/usr/bin/env bash
# Installs what cardhsm needs to build and test on Debian: SoftHSM, OpenSC (pkcs11-tool),
# pcscd and libpcsclite, openssl, python3, unzip (batch ZIPs) — and Rust (rustup) when cargo is missing.
#
# Idempotent and quiet: when everything is already there it prints nothing and exits 0.
# Runs apt-get as root, or through sudo when not root. Exits non-zero with a clear message
# when something cannot be installed.
set -euo pipefail

PACKAGES=(softhsm2 opensc pcscd libpcsclite-dev pcsc-tools vsmartcard-vpcd util-linux mount pkg-config openssl ca-certificates python3 unzip)

die() {
    echo "install-deps: error: $*" >&2
    exit 1
}

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run '$*' (not root and sudo is not installed)"
    fi
}

# --- Debian packages ------------------------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
    # `dpkg -s` also succeeds for removed-but-configured packages: check the status line.
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "missing packages ${missing[*]} and apt-get is not available"
    echo "install-deps: installing ${missing[*]}" >&2
    log="$(mktemp)"
    trap 'rm -f "$log"' EXIT
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$log" 2>&1; then
        cat "$log" >&2
        die "apt-get update failed"
    fi
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >"$log" 2>&1; then
        cat "$log" >&2
        die "apt-get install ${missing[*]} failed"
    fi
fi

# --- Rust -------------------------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        echo "install-deps: cargo is installed in ~/.cargo/bin but not on PATH; run: source \"\$HOME/.cargo/env\"" >&2
    else
        command -v curl >/dev/null 2>&1 || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q curl >/dev/null \
            || die "cargo is missing and curl (needed to install rustup) could not be installed"
        echo "install-deps: cargo not found; installing Rust with rustup" >&2
        if ! curl --proto '=https' --tlsv1.2 https://sh.rustup.rs -sSf | sh -s -- -y --profile minimal \
            --component rustfmt --component clippy >&2; then
            die "installing Rust with rustup failed; install a Rust toolchain (https://rustup.rs) and retry"
        fi
        [ -x "$HOME/.cargo/bin/cargo" ] || die "rustup finished but ~/.cargo/bin/cargo does not exist"
        echo "install-deps: Rust installed; run: source \"\$HOME/.cargo/env\" (or open a new shell)" >&2
    fi
fi

# --- rustfmt and clippy (scripts/test.sh runs both) -------------------------------------------
if [ -f "$HOME/.cargo/env" ] && ! command -v cargo >/dev/null 2>&1; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
if command -v cargo >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; then
    for component in rustfmt clippy; do
        probe="fmt"
        [ "$component" = clippy ] && probe="clippy"
        if ! cargo "$probe" --version >/dev/null 2>&1; then
            rustup component add "$component" >/dev/null 2>&1 \
                || die "cargo $probe is missing and 'rustup component add $component' failed"
        fi
    done
fi

# --- Python gRPC client (tests/tests/grpcio_reflection.rs drives the daemon with it) ---------
if ! python3 -c 'import grpc, grpc_reflection, google.protobuf' >/dev/null 2>&1; then
    if ! python3 -m pip --version >/dev/null 2>&1; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-pip >/dev/null \
            || die "python3 has no pip and python3-pip could not be installed"
    fi
    # Debian's system python refuses pip installs without --break-system-packages (PEP 668);
    # a pyenv or venv python takes the plain form.
    python3 -m pip install --quiet grpcio grpcio-reflection protobuf >/dev/null 2>&1 \
        || python3 -m pip install --quiet --break-system-packages grpcio grpcio-reflection protobuf >/dev/null \
        || die "pip could not install grpcio, grpcio-reflection and protobuf"
fi
