#!/usr/bin/env bash
# Command 1 of the README: install what is missing, make a SoftHSM dev token, build, and run
# cardhsmd in the foreground on its embedded defaults (SQLite file + SoftHSM dev token), all
# under ./.dev. Re-running keeps the tokens, the database and the admin password.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
DEV="$ROOT/.dev"

scripts/install-deps.sh
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

echo "==> building cardhsmd and cardhsm (release)"
cargo build --release --quiet -p cardhsmd -p cardhsm-client

echo "==> SoftHSM dev tokens in $DEV/hsm"
mkdir -p "$DEV"
./softhsm-setup.sh --dir "$DEV/hsm" --cards 2 >"$DEV/softhsm-setup.out"
export SOFTHSM2_CONF="$DEV/hsm/softhsm2.conf"
grep '^#' "$DEV/softhsm-setup.out" || true

if [ ! -f "$DEV/cardhsm.toml" ]; then
  cat >"$DEV/cardhsm.toml" <<'TOML'
# cardhsm dev configuration (made by scripts/dev.sh). See cardhsm.example.toml for every key.
[server]
grpc_listen = "127.0.0.1:50051"

[store]
path = "cardhsm.sqlite3"

[pkcs11]
module = "/usr/lib/softhsm/libsofthsm2.so"
card_pin = { file = "hsm/card.pin" }

[[pkcs11.tokens]]
label = "cardhsm-daemon"
role = "daemon"
pin = { file = "hsm/daemon.pin" }
TOML
fi

# The bootstrap administrator's password: generated once, kept user-only.
if [ ! -s "$DEV/admin.password" ]; then
  (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' '-_' >"$DEV/admin.password")
fi
CARDHSM_BOOTSTRAP_PASSWORD="$(cat "$DEV/admin.password")"
export CARDHSM_BOOTSTRAP_PASSWORD

cat <<MSG
==> starting cardhsmd (Ctrl-C stops it)
    administrator: admin, password in $DEV/admin.password
    in another shell:
      export SOFTHSM2_CONF=$SOFTHSM2_CONF PATH=$ROOT/target/release:\$PATH
      CARDHSM_PASSWORD="\$(cat $DEV/admin.password)" cardhsm login --username admin
      cardhsm tokens list
MSG
exec "$ROOT/target/release/cardhsmd" --config "$DEV/cardhsm.toml"
