#!/usr/bin/env bash
# RoseWire federation benchmark (issue 7, section 3):
#   fanout  chat lines said on instance A, timed until they show in a line-mode shell on C,
#           across three real instances on loopback: A (127.0.0.2), B (127.0.0.3, bootstrap
#           A), C (127.0.0.4, bootstrap B); C learns A only through gossip.
# The inbox throughput (signed activities verified and applied per second) is the Rust
# bench `cargo bench --bench inbox` (benches/inbox.rs).
# See benches/README.md for what each figure means and the last figures measured.
#
# Usage: benches/federation.sh [fanout]   (default: fanout)
# Knobs (environment): LINES=200 SENDERS=40 RATE=50 (lines a second, all senders together)
#   KEEP=1 (keep the temp dir) NO_BUILD=1 (use target/release/rosewire) ROSEWIRE_BIN=PATH
#   ROSEWIRE_LOG=info
#
# Network: loopback only: the instances on 127.0.0.2-4, the OpenSSH clients from 127.0.0.9.
# Every wait is bounded; every process started here is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS_DIR="$ROOT/benches/results"
PART_TIMEOUT=${PART_TIMEOUT:-600}

case ${1:-fanout} in
    fanout) ;;
    *) echo "usage: $0 [fanout]" >&2; exit 2 ;;
esac

# shellcheck source=benches/common.sh
. "$ROOT/benches/common.sh"

need_install=()
command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || need_install+=(openssh-client)
command -v python3 >/dev/null || need_install+=(python3)
install_packages "${need_install[@]}"
build_rosewire

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rosewire-bench-federation.XXXXXX")
PIDS=()
CLIENT_PID=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -z "$CLIENT_PID" ] || kill -- -"$CLIENT_PID" 2>/dev/null || true
    stop_pids $CLIENT_PID "${PIDS[@]}"
    drop_work $rc
    exit $rc
}
trap cleanup EXIT
on_signal() { exit 130; }
trap on_signal INT TERM

SENDERS=${SENDERS:-40}
mkdir -p "$WORK/keys"
keygen "$WORK/keys/bob" bob
keygen "$WORK/keys/watcher" watcher
for i in $(seq 0 $((SENDERS - 1))); do
    u=$(printf 's%03d' "$i")
    keygen "$WORK/keys/$u" "$u"
done

# start_node NAME IP [ARG...]: a federated instance named IP:HTTP_PORT. Sets NODE_* for NAME.
start_node() {
    local name=$1 ip=$2 dir="$WORK/$1"
    shift 2
    mkdir -p "$dir"
    # The senders' shells all come from one address: let them in at once.
    printf '[ssh]\nconnections_per_minute_per_address = 100000\nmax_unauthenticated_per_address = 64\n' \
        >"$dir/config.toml"
    ROSEWIRE_DOMAIN="$ip:0" start_rosewire "$dir" "$ip" "$@"
    PIDS+=("$ROSEWIRE_PID")
    eval "${name}_PORT=$OURS_PORT ${name}_HTTP=$OURS_HTTP_PORT ${name}_DOMAIN=$OURS_DOMAIN"
    log "$name: pid $ROSEWIRE_PID, domain $OURS_DOMAIN, ssh port $OURS_PORT"
}

start_node A 127.0.0.2
start_node B 127.0.0.3 --bootstrap "http://127.0.0.2:$A_HTTP"
start_node C 127.0.0.4 --bootstrap "http://127.0.0.3:$B_HTTP"

mkdir -p "$RESULTS_DIR"
RESULTS="$RESULTS_DIR/federation-latest.md"
{
    echo "# RoseWire federation benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))"
    echo "# $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM," \
        "rosewire $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD -- src shell Cargo.toml 2>/dev/null || echo '+dirty')," \
        "$(ssh -V 2>&1), load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
} >"$RESULTS.tmp"

setsid timeout --kill-after=30 "$PART_TIMEOUT" python3 "$ROOT/benches/federation.py" fanout \
    --a-ip 127.0.0.2 --a-port "$A_PORT" --a-domain "$A_DOMAIN" \
    --b-ip 127.0.0.3 --b-port "$B_PORT" --b-domain "$B_DOMAIN" \
    --c-ip 127.0.0.4 --c-port "$C_PORT" --c-domain "$C_DOMAIN" \
    --keys "$WORK/keys" --senders "$SENDERS" --lines "${LINES:-200}" --rate "${RATE:-50}" \
    </dev/null >"$WORK/figures.txt" &
CLIENT_PID=$!
rc=0
wait "$CLIENT_PID" || rc=$?
CLIENT_PID=
cat "$WORK/figures.txt" >>"$RESULTS.tmp"
for n in A B C; do
    warns=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/$n/server.log" | grep -cE '^\S+ +(ERROR|WARN) ' || true)
    echo "$n: server WARN/ERROR log lines: $warns" >>"$RESULTS.tmp"
done
mv "$RESULTS.tmp" "$RESULTS"
cat "$RESULTS"
[ $rc -eq 0 ] || die "the clients failed (exit $rc; 124: over ${PART_TIMEOUT}s)"
log "written to ${RESULTS#"$ROOT"/}"
