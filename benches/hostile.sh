#!/usr/bin/env bash
# RoseWire hostile-client benchmark: replays the attacks of issue 6 (findings 1, 2, 3, 4 and 11)
# against a release build and prints what they did to the server:
#   flood    1. ~1,000 connections that never log in, then 20 legit `ssh alice who`
#   listing  2. 3 SFTP sessions x 64 OPENDIR of a 50,000-folder directory: server RSS
#   amplify  3. a 20 MiB sparse file opened read-write 64 times in each of 2 sessions: .partial/
#   typing   4. server CPU per 256 KiB typed onto one long line vs short lines; `who` meanwhile
#   browse  11. `browse --json` of 40,000 shared files: answer size, RSS added by 30 at once
# Each part starts its own server (fresh data directory), so each can run alone. The attacks
# only report what happened: where a limit refuses one, the figure says "refused: N of M".
# See benches/README.md for what each figure means and the last figures measured.
#
# Usage: benches/hostile.sh [flood|listing|amplify|typing|browse|all]   (default: all)
# Knobs (environment): FLOOD=1080 LEGIT_LOGINS=20 FOLDERS=50000 NAME_LEN=200 OPENS=64
#   SPARSE_MIB=20 QUOTA_MIB=50 TYPED_KIB=256 KEYS_PER_WRITE=64 BURST_KEYS=4096 FILES=40000
#   BROWSERS=30 UPLOAD_SESSIONS=8
#   MIN_AVAILABLE_MIB=2048 (the listing attack lets go when the machine has less free memory)
#   KEEP=1 (keep the temp dir) NO_BUILD=1 (use target/release/rosewire) ROSEWIRE_BIN=PATH
#
# Network: loopback only: the server on 127.0.0.3, legitimate clients from 127.0.0.9, the
# attacker from 127.0.0.11-19. Every loop is bounded in count and in time; every client has a
# timeout; every process started here is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVER_IP=127.0.0.3
PARTS_ALL=(flood listing amplify typing browse)
# Longest one part may take before it is killed (the slowest, browse, uploads 40,000 files).
PART_TIMEOUT=${PART_TIMEOUT:-2400}
RESULTS_DIR="$ROOT/benches/results"
RESULTS="$RESULTS_DIR/hostile-latest.txt"

case ${1:-all} in
    all) PARTS=("${PARTS_ALL[@]}") ;;
    flood | listing | amplify | typing | browse) PARTS=("$1") ;;
    *) echo "usage: $0 [flood|listing|amplify|typing|browse|all]" >&2; exit 2 ;;
esac

# shellcheck source=benches/common.sh
. "$ROOT/benches/common.sh"

# --- prerequisites --------------------------------------------------------------------------
need_install=()
command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || need_install+=(openssh-client)
command -v python3 >/dev/null || need_install+=(python3 python3-pip)
command -v du >/dev/null || need_install+=(coreutils)
install_packages "${need_install[@]}"
if ! python3 -c 'import paramiko' 2>/dev/null; then
    log "installing paramiko (pip)"
    python3 -m pip install --quiet paramiko 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages paramiko \
        || die "paramiko is needed for the SFTP and pre-authentication clients: pip install paramiko"
fi
build_rosewire
# The flood needs more than a thousand sockets in one client process.
[ "$(ulimit -n)" -ge 4096 ] || ulimit -n 4096 2>/dev/null || ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rosewire-bench-hostile.XXXXXX")
ROSEWIRE_PID=
CLIENT_PID=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -z "$CLIENT_PID" ] || kill -- -"$CLIENT_PID" 2>/dev/null || true
    stop_pids $CLIENT_PID $ROSEWIRE_PID
    drop_work $rc
    exit $rc
}
trap cleanup EXIT
on_signal() { exit 130; }
trap on_signal INT TERM

mkdir -p "$WORK/keys"
for u in alice bob carol; do keygen "$WORK/keys/$u" "$u"; done

# config_for PART: the server's config for that part, with keys that exist in every version.
config_for() {
    case $1 in
        flood) # the defaults: the attacker spreads over 9 addresses to pass the per-address rate
            echo '# defaults' ;;
        amplify)
            cat <<EOF
[ssh]
connections_per_minute_per_address = 100000

[library]
quota_bytes = $((${QUOTA_MIB:-50} << 20))
max_file_bytes = $((${QUOTA_MIB:-50} << 20))
EOF
            ;;
        *)
            printf '[ssh]\nconnections_per_minute_per_address = 100000\n' ;;
    esac
}

# run_part PART: a fresh server, the attack, the server stopped. Figures on stdout.
run_part() {
    local part=$1 dir="$WORK/$1"
    mkdir -p "$dir"
    config_for "$part" >"$dir/config.toml"
    # BROWSE_LIBRARY: extra [library] lines for the browse part, for a build whose default
    # library.max_entries (10,000) would refuse the 40,000 files (e.g. "max_entries = 50000").
    if [ "$part" = browse ] && [ -n "${BROWSE_LIBRARY:-}" ]; then
        printf '\n[library]\n%s\n' "$BROWSE_LIBRARY" >>"$dir/config.toml"
    fi
    start_rosewire "$dir" "$SERVER_IP"
    log "$part: rosewire pid $ROSEWIRE_PID on $SERVER_IP:$OURS_PORT"
    local u
    for u in alice bob carol; do # claim the nicknames
        timeout 30 ssh -p "$OURS_PORT" -o BindAddress=127.0.0.9 -o BatchMode=yes \
            -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes \
            -o LogLevel=ERROR -o ConnectTimeout=10 -i "$WORK/keys/$u" "$u@$SERVER_IP" who \
            </dev/null >/dev/null || die "ssh $u@$SERVER_IP who failed: $(tail -3 "$dir/server.log")"
    done
    # Its own process group, so that it and every ssh it started can be stopped together.
    setsid timeout --kill-after=30 "$PART_TIMEOUT" python3 "$ROOT/benches/hostile.py" "$part" \
        --ip "$SERVER_IP" --port "$OURS_PORT" --pid "$ROSEWIRE_PID" --data "$dir/data" \
        --keys "$WORK/keys" --domain bench.test </dev/null >"$dir/figures.txt" &
    CLIENT_PID=$!
    local rc=0
    wait "$CLIENT_PID" || rc=$?
    CLIENT_PID=
    cat "$dir/figures.txt"
    [ $rc -eq 0 ] || echo "$part: the clients FAILED (exit $rc; 124: over ${PART_TIMEOUT}s)"
    local warns
    warns=$(sed 's/\x1b\[[0-9;]*m//g' "$dir/server.log" | grep -cE '^\S+ +(ERROR|WARN) ' || true)
    echo "$part: server WARN/ERROR log lines: $warns"
    log "$part: stopping the server, removing its data"
    stop_pids "$ROSEWIRE_PID"
    ROSEWIRE_PID=
    rm -rf "$dir/data" # gigabytes after amplify, 50,000 folders after listing
    log "$part: done"
}

mkdir -p "$RESULTS_DIR"
{
    echo "# RoseWire hostile-client benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))"
    echo "# $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM," \
        "rosewire $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD -- src shell Cargo.toml 2>/dev/null || echo '+dirty')${ROSEWIRE_BIN:+ (measured: $ROSEWIRE_BIN)}," \
        "paramiko $(python3 -c 'import paramiko; print(paramiko.__version__)'), $(ssh -V 2>&1)"
} >"$RESULTS.tmp"
for part in "${PARTS[@]}"; do
    log "=== $part"
    start=$SECONDS
    run_part "$part" >"$WORK/$part.out" # not a pipe: run_part must run in this shell (the trap)
    cat "$WORK/$part.out" | tee -a "$RESULTS.tmp"
    log "=== $part took $((SECONDS - start)) s"
done
mv "$RESULTS.tmp" "$RESULTS"
echo
cat "$RESULTS"
log "written to ${RESULTS#"$ROOT"/}"
