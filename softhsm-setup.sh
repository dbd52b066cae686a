#!/usr/bin/env bash
# softhsm-setup.sh — makes a private SoftHSM token directory with the tokens cardhsmd and its
# tests use: one daemon token and N card tokens. Run with --help for the arguments.
set -euo pipefail

PROG="$(basename "$0")"

usage() {
    cat <<EOF
Usage: $PROG --dir DIR [options]

Makes a private SoftHSM token directory in DIR (anywhere; created when missing):
  DIR/softhsm2.conf   SoftHSM config: directories.tokendir = DIR/tokens, objectstore.backend = file,
                      log.level = ERROR, slots.removable = false
  DIR/tokens/         the token store
  DIR/daemon.pin      user PIN of the daemon token                      (mode 0600)
  DIR/card.pin        user PIN shared by all card tokens                (mode 0600)
  DIR/so.pin          security officer PIN of every token               (mode 0600)
and initialises in it one daemon token and N card tokens (card-01, card-02, ...).

Options:
  --dir DIR             where to put everything (required)
  --label LABEL         label of the daemon token (default: cardhsm-daemon)
  --cards N             number of card tokens, 0..=99 (default: 2); labelled card-01 ... card-NN
  --pin-file FILE       read the daemon token's user PIN from FILE
  --card-pin-file FILE  read the card tokens' user PIN from FILE
  --so-pin-file FILE    read the SO PIN from FILE
  -h, --help            show this help and exit

PINs: each comes from its --*-pin-file option when given, else from the environment variable
CARDHSM_TOKEN_PIN (daemon), CARDHSM_CARD_PIN (cards) or CARDHSM_SO_PIN (SO) when set, else from
the PIN file already in DIR (a re-run), else it is generated at random. Whatever its origin, the
PIN in use is written to DIR/daemon.pin, DIR/card.pin and DIR/so.pin (one trailing newline,
mode 0600), which is where cardhsm.toml can point:
    card_pin = { file = "DIR/card.pin" }
    [[pkcs11.tokens]] label = "cardhsm-daemon", role = "daemon", pin = { file = "DIR/daemon.pin" }
PINs are 4..=255 characters without newlines.

Idempotent: a token whose label already exists in DIR is left alone; when all exist the script
only prints. At the end it prints (on stdout)
    export SOFTHSM2_CONF=DIR/softhsm2.conf
followed by one comment line per token:
    # <role> <label> <serial> <pin file>
so   eval "\$($PROG --dir DIR)"   sets up the current shell.

Needs softhsm2-util (Debian package softhsm2).
EOF
}

die() {
    echo "$PROG: error: $*" >&2
    exit 1
}

dir=""
daemon_label="cardhsm-daemon"
cards=2
pin_file=""
card_pin_file=""
so_pin_file=""

need_arg() {
    if [ "$#" -lt 2 ] || [ -z "$2" ]; then
        die "$1 needs a value (see --help)"
    fi
}

while [ "$#" -gt 0 ]; do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        --dir) need_arg "$@"; dir="$2"; shift 2 ;;
        --label) need_arg "$@"; daemon_label="$2"; shift 2 ;;
        --cards) need_arg "$@"; cards="$2"; shift 2 ;;
        --pin-file) need_arg "$@"; pin_file="$2"; shift 2 ;;
        --card-pin-file) need_arg "$@"; card_pin_file="$2"; shift 2 ;;
        --so-pin-file) need_arg "$@"; so_pin_file="$2"; shift 2 ;;
        --dir=* | --label=* | --cards=* | --pin-file=* | --card-pin-file=* | --so-pin-file=*)
            opt="${1%%=*}"
            val="${1#*=}"
            shift
            set -- "$opt" "$val" "$@"
            ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done

[ -n "$dir" ] || die "--dir DIR is required (see --help)"
[[ "$cards" =~ ^[0-9]{1,2}$ ]] || die "--cards must be a number from 0 to 99, got '$cards'"
cards=$((10#$cards))
# Token labels are at most 32 bytes (CK_TOKEN_INFO.label); keep them to characters that need no
# quoting anywhere (TOML, shell, the summary lines below).
[[ "$daemon_label" =~ ^[A-Za-z0-9._-]{1,32}$ ]] \
    || die "--label must be 1 to 32 characters of A-Z a-z 0-9 . _ -, got '$daemon_label'"
[[ "$daemon_label" =~ ^card-[0-9]+$ ]] && die "--label '$daemon_label' collides with the card token labels"

command -v softhsm2-util >/dev/null 2>&1 \
    || die "softhsm2-util not found: install the softhsm2 package (scripts/install-deps.sh does)"

# Everything created from here on is private to the user.
umask 077

mkdir -p "$dir/tokens" || die "cannot create $dir/tokens"
dir="$(cd "$dir" && pwd -P)"
conf="$dir/softhsm2.conf"

# --- SoftHSM config -----------------------------------------------------------------------------

conf_text="# Written by $PROG: a private SoftHSM token directory.
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false"
if [ ! -e "$conf" ] || [ "$(cat "$conf")" != "$conf_text" ]; then
    tmp="$(mktemp "$conf.XXXXXX")"
    printf '%s\n' "$conf_text" >"$tmp"
    chmod 600 "$tmp"
    mv -f "$tmp" "$conf"
fi
export SOFTHSM2_CONF="$conf"

# --- the token store: what is in it already --------------------------------------------------------

# Prints "<label> <serial>" for each initialised token in the store.
list_tokens() {
    local out
    out="$(softhsm2-util --show-slots 2>&1)" || die "softhsm2-util --show-slots failed: $out"
    printf '%s\n' "$out" | awk '
        function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
        /^Slot [0-9]+/        { serial = ""; init = "" }
        /^ *Serial number:/   { s = $0; sub(/^ *Serial number:/, "", s); serial = trim(s) }
        /^ *Initialized:/     { s = $0; sub(/^ *Initialized:/, "", s); init = trim(s) }
        /^ *Label:/           { s = $0; sub(/^ *Label:/, "", s); l = trim(s)
                                if (init == "yes" && l != "") print l, serial }'
}

token_serial() {
    list_tokens | awk -v l="$1" '$1 == l { print $2; exit }'
}

# --- PINs -------------------------------------------------------------------------------------

random_pin() {
    # 16 random bytes as 32 hex characters.
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n'
}

# Reads a PIN file: the whole file less one trailing newline (like hsm-config does).
read_pin_file() {
    local f="$1" v
    [ -r "$f" ] || die "cannot read PIN file $f"
    v="$(cat "$f"; printf x)"
    v="${v%x}"
    v="${v%$'\n'}"
    v="${v%$'\r'}"
    printf '%s' "$v"
}

check_pin() {
    local what="$1" v="$2"
    if [ "${#v}" -lt 4 ] || [ "${#v}" -gt 255 ]; then
        die "$what must be 4 to 255 characters long"
    fi
    case "$v" in *$'\n'* | *$'\r'*) die "$what must not contain a newline" ;; esac
}

# pick_pin WHAT OPTION_FILE ENV_NAME TARGET_FILE: prints the PIN to use.
pick_pin() {
    local what="$1" from_file="$2" env_name="$3" target="$4" v
    if [ -n "$from_file" ]; then
        v="$(read_pin_file "$from_file")"
    elif [ -n "${!env_name:-}" ]; then
        v="${!env_name}"
    elif [ -e "$target" ]; then
        v="$(read_pin_file "$target")"
    else
        v="$(random_pin)"
    fi
    check_pin "$what" "$v"
    printf '%s' "$v"
}

# write_pin FILE VALUE: writes VALUE and one newline to FILE, mode 0600, atomically.
write_pin() {
    local target="$1" v="$2" tmp
    if [ -e "$target" ] && [ "$(read_pin_file "$target")" = "$v" ]; then
        chmod 600 "$target"
        return 0
    fi
    tmp="$(mktemp "$target.XXXXXX")"
    printf '%s\n' "$v" >"$tmp"
    chmod 600 "$tmp"
    mv -f "$tmp" "$target"
}

# pin_origin OPTION_FILE ENV_NAME TARGET_FILE: where pick_pin takes the PIN from.
pin_origin() {
    local from_file="$1" env_name="$2" target="$3"
    if [ -n "$from_file" ]; then
        echo "file $from_file"
    elif [ -n "${!env_name:-}" ]; then
        echo "environment variable $env_name"
    elif [ -e "$target" ]; then
        echo existing
    else
        echo random
    fi
}

# settle_pin VAR WHAT OPTION_FILE ENV_NAME TARGET_FILE TOKENS_EXIST: picks the PIN into VAR and
# writes it to TARGET_FILE. When tokens using it exist already, TARGET_FILE is the truth: a
# missing file or a different PIN from an option or the environment is refused, never written.
settle_pin() {
    local var="$1" what="$2" from_file="$3" env_name="$4" target="$5" exist="$6" origin v
    origin="$(pin_origin "$from_file" "$env_name" "$target")"
    v="$(pick_pin "$what" "$from_file" "$env_name" "$target")"
    if [ "$exist" = yes ]; then
        if [ ! -e "$target" ]; then
            [ "$origin" != random ] \
                || die "$dir/tokens already holds tokens but $target is missing: give the $what with an option or the environment (see --help)"
        elif [ "$(read_pin_file "$target")" != "$v" ]; then
            die "the $what from $origin differs from $target, which the existing tokens use; remove $dir to start over"
        fi
    fi
    write_pin "$target" "$v"
    printf -v "$var" '%s' "$v"
}

existing="$(list_tokens)"
has_token() { printf '%s\n' "$existing" | awk -v l="$1" '$1 == l { f = 1 } END { exit !f }'; }
daemon_exists=no
card_exists=no
any_exists=no
has_token "$daemon_label" && daemon_exists=yes
printf '%s\n' "$existing" | grep -q '^card-[0-9]' && card_exists=yes
[ -n "$existing" ] && any_exists=yes

daemon_pin=""
card_pin=""
so_pin=""
settle_pin daemon_pin "daemon PIN" "$pin_file" CARDHSM_TOKEN_PIN "$dir/daemon.pin" "$daemon_exists"
settle_pin card_pin "card PIN" "$card_pin_file" CARDHSM_CARD_PIN "$dir/card.pin" "$card_exists"
settle_pin so_pin "SO PIN" "$so_pin_file" CARDHSM_SO_PIN "$dir/so.pin" "$any_exists"

# --- tokens ---------------------------------------------------------------------------------------

init_token() {
    local label="$1" pin="$2" out
    if [ -n "$(token_serial "$label")" ]; then
        return 0
    fi
    # softhsm2-util takes PINs only as arguments (it reads them from a terminal, never from a
    # pipe), so both PINs are visible in `ps` for the ~15 ms this command runs. Unavoidable for
    # initialisation; everything else reads PINs from the 0600 files or the environment.
    out="$(softhsm2-util --init-token --free --label "$label" --so-pin "$so_pin" --pin "$pin" 2>&1)" \
        || die "initialising token '$label' failed: $out"
    [ -n "$(token_serial "$label")" ] || die "token '$label' was initialised but is not listed: $out"
}

init_token "$daemon_label" "$daemon_pin"
card_labels=()
for ((i = 1; i <= cards; i++)); do
    label="$(printf 'card-%02d' "$i")"
    card_labels+=("$label")
    init_token "$label" "$card_pin"
done

# --- summary --------------------------------------------------------------------------------------

tokens="$(list_tokens)"
serial_of() { printf '%s\n' "$tokens" | awk -v l="$1" '$1 == l { print $2; exit }'; }

printf 'export SOFTHSM2_CONF=%q\n' "$conf"
printf '# %-6s %-32s %-16s %s\n' role label serial "pin file"
printf '# %-6s %-32s %-16s %s\n' daemon "$daemon_label" "$(serial_of "$daemon_label")" "$dir/daemon.pin"
for label in "${card_labels[@]+"${card_labels[@]}"}"; do
    printf '# %-6s %-32s %-16s %s\n' card "$label" "$(serial_of "$label")" "$dir/card.pin"
done
