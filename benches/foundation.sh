#!/usr/bin/env bash
# RoseWire foundation benchmark: login cost against Debian's OpenSSH server, and capacity
# (N concurrent interactive sessions on one instance, one chat line reaching all of them,
# peak RSS of the server). See benches/README.md for what each figure means.
#
# Usage: benches/foundation.sh            (from anywhere; needs loopback 127.0.0.2/3/9 only)
# Knobs (environment): SESSIONS=500 LOGIN_RUNS=20 BATCH=50 KEEP=1 (keep the temp dir)
#   NO_BUILD=1 (use the existing target/release/rosewire) ROSEWIRE_BIN=PATH (another build)
#
# Network: loopback only. Every loop is bounded in count and in time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SESSIONS=${SESSIONS:-500}
LOGIN_RUNS=${LOGIN_RUNS:-20}
BATCH=${BATCH:-50}
PROBE_WAIT_SECS=${PROBE_WAIT_SECS:-30}   # how long the chat line may take to reach everyone
CONNECT_WAIT_SECS=${CONNECT_WAIT_SECS:-60} # how long one batch of sessions may take to show up
OURS_IP=127.0.0.2
SSHD_IP=127.0.0.3
CLIENT_IP=127.0.0.9
RESULTS_DIR="$ROOT/benches/results"
RESULTS="$RESULTS_DIR/foundation-latest.md"

# shellcheck source=benches/common.sh
. "$ROOT/benches/common.sh"

# --- 1. prerequisites ---------------------------------------------------------------------
need_install=()
[ -x /usr/sbin/sshd ] || need_install+=(openssh-server)
command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || need_install+=(openssh-client)
command -v python3 >/dev/null || need_install+=(python3)
install_packages "${need_install[@]}"
build_rosewire

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rosewire-bench.XXXXXX")
SESSION_PIDS=()
ROSEWIRE_PID=
SSHD_PID=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pids "${SESSION_PIDS[@]}"
    stop_pids $ROSEWIRE_PID $SSHD_PID
    exec 9>&-
    drop_work $rc
    exit $rc
}
trap cleanup EXIT
on_signal() { exit 130; }
trap on_signal INT TERM

SSH_COMMON=(-b "$CLIENT_IP" -o BatchMode=yes -o StrictHostKeyChecking=no
    -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o LogLevel=ERROR
    -o ConnectTimeout=30 -o ControlMaster=no -o ControlPath=none)

# --- 2. servers -------------------------------------------------------------------------
mkdir -p "$WORK/sshd" "$WORK/rosewire" "$WORK/keys" "$WORK/sessions"
keygen "$WORK/keys/alice" alice
cp "$WORK/keys/alice.pub" "$WORK/sshd/authorized_keys"
start_sshd "$WORK/sshd" "$SSHD_IP" "MaxStartups 100:30:200"

cat >"$WORK/rosewire/config.toml" <<EOF
[ssh]
connections_per_minute_per_address = 100000
max_connections = 2048
# A batch logs in at once from one address: the same room as sshd's MaxStartups above.
max_unauthenticated_per_address = 200
max_startups = "100:30:200"
EOF
start_rosewire "$WORK/rosewire" "$OURS_IP"
log "rosewire pid $ROSEWIRE_PID on $OURS_IP:$OURS_PORT; sshd pid $SSHD_PID on $SSHD_IP:$SSHD_PORT"

ours() { ssh -p "$OURS_PORT" "${SSH_COMMON[@]}" -i "$WORK/keys/alice" alice@"$OURS_IP" "$@"; }
# Claim the nickname and check both servers answer before timing anything.
ours who </dev/null >/dev/null || die "ssh alice@$OURS_IP who failed"
ssh -p "$SSHD_PORT" "${SSH_COMMON[@]}" -i "$WORK/keys/alice" "$SSHD_USER@$SSHD_IP" true </dev/null \
    || die "ssh $SSHD_USER@$SSHD_IP true failed; sshd log: $(cat "$WORK/sshd/sshd.log")"

IDLE_RSS=$(vm "$ROSEWIRE_PID" VmRSS)

# --- 3. login cost ----------------------------------------------------------------------
log "login cost: $LOGIN_RUNS alternating runs each"
LOGIN_JSON=$(python3 - "$LOGIN_RUNS" "$OURS_PORT" "$SSHD_PORT" "$WORK/keys/alice" "$SSHD_USER" \
    "$OURS_IP" "$SSHD_IP" "${SSH_COMMON[@]}" <<'PY'
import json, statistics, subprocess, sys, time
runs, ours_port, sshd_port, key, sshd_user, ours_ip, sshd_ip = sys.argv[1:8]
common = sys.argv[8:]
runs = int(runs)

def timed(cmd):
    t = time.perf_counter()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{cmd[-2:]} exited {p.returncode}: {p.stderr.decode(errors='replace')}")
    return dt

result = {}
# "default": each client/server pair negotiates what it would in real life (OpenSSH 9.x with
# OpenSSH picks sntrup761x25519; with RoseWire, curve25519). "samekex": both forced to
# curve25519-sha256, to show how much of the difference is the key exchange alone.
for mode, extra in (("default", []), ("samekex", ["-o", "KexAlgorithms=curve25519-sha256"])):
    ours = ["ssh", "-p", ours_port, *common, *extra, "-i", key, f"alice@{ours_ip}", "who"]
    theirs = ["ssh", "-p", sshd_port, *common, *extra, "-i", key, f"{sshd_user}@{sshd_ip}", "true"]
    timed(ours); timed(theirs)  # warm-up pair, not counted
    o, s = [], []
    for i in range(runs):  # alternate which goes first so neither always follows the other
        if i % 2 == 0:
            o.append(timed(ours)); s.append(timed(theirs))
        else:
            s.append(timed(theirs)); o.append(timed(ours))
    mo, ms = statistics.median(o), statistics.median(s)
    result.update({
        f"{mode}_ours_ms": mo * 1e3, f"{mode}_sshd_ms": ms * 1e3, f"{mode}_ratio": mo / ms,
        f"{mode}_pair_ratio": statistics.median(a / b for a, b in zip(o, s)),
        f"{mode}_ours_min_ms": min(o) * 1e3, f"{mode}_ours_max_ms": max(o) * 1e3,
        f"{mode}_sshd_min_ms": min(s) * 1e3, f"{mode}_sshd_max_ms": max(s) * 1e3,
    })
print(json.dumps(result))
PY
) || die "login cost measurement failed"
jget() { python3 -c 'import json,sys; print(format(json.loads(sys.argv[1])[sys.argv[2]], sys.argv[3]))' "$LOGIN_JSON" "$1" "$2"; }
log "login: ours $(jget default_ours_ms .1f) ms, sshd $(jget default_sshd_ms .1f) ms, ratio $(jget default_ratio .3f)"
log "login, same kex: ours $(jget samekex_ours_ms .1f) ms, sshd $(jget samekex_sshd_ms .1f) ms, ratio $(jget samekex_ratio .3f)"

# --- 4. capacity ------------------------------------------------------------------------
log "capacity: generating $SESSIONS keys"
seq -f 'u%04g' 1 "$SESSIONS" >"$WORK/nicks"
xargs -P 8 -I{} ssh-keygen -q -t ed25519 -N '' -C {} -f "$WORK/keys/{}" <"$WORK/nicks" \
    || die "ssh-keygen failed"

online() { ours who --json </dev/null 2>/dev/null | grep -c '"nick"' || true; }

# One FIFO, opened read-write and never written: every session's stdin stays open and silent,
# so the clients neither send input nor see end-of-file.
mkfifo "$WORK/stdin.fifo"
exec 9<>"$WORK/stdin.fifo"
export TERM=xterm-256color
CONNECT_START=$(date +%s.%N)
opened=0
mapfile -t NICKS <"$WORK/nicks"
while [ "$opened" -lt "$SESSIONS" ]; do
    end=$((opened + BATCH)); [ "$end" -gt "$SESSIONS" ] && end=$SESSIONS
    for ((i = opened; i < end; i++)); do
        n=${NICKS[$i]}
        ssh -tt -p "$OURS_PORT" "${SSH_COMMON[@]}" -i "$WORK/keys/$n" "$n@$OURS_IP" \
            <&9 >"$WORK/sessions/$n.out" 2>"$WORK/sessions/$n.err" &
        SESSION_PIDS+=($!)
    done
    opened=$end
    deadline=$((SECONDS + CONNECT_WAIT_SECS))
    while :; do
        count=$(online)
        [ "$count" -ge "$opened" ] && break
        if [ $SECONDS -ge $deadline ]; then
            log "only $count of $opened sessions online after ${CONNECT_WAIT_SECS}s; going on"
            break
        fi
        sleep 0.5
    done
    log "  $count online (opened $opened)"
done
CONNECT_SECS=$(python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.1f}')" "$CONNECT_START" "$(date +%s.%N)")
ONLINE=$(online)
ALIVE=0; for p in "${SESSION_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && ALIVE=$((ALIVE + 1)); done
log "$ONLINE users online, $ALIVE of $SESSIONS ssh clients alive, after ${CONNECT_SECS}s"
# Settle: let the join announcements drain before the probe and the RSS reading.
sleep 2
LOADED_RSS=$(vm "$ROSEWIRE_PID" VmRSS)

PROBE="capacity-probe-$RANDOM$RANDOM"
received() { grep -lF -- "$PROBE" "$WORK"/sessions/*.out 2>/dev/null | wc -l; }
log "alice says $PROBE"
PROBE_START=$(date +%s.%N)
ours say "$PROBE" </dev/null >/dev/null || die "ssh alice@$OURS_IP say failed"
ALL_SECS="not reached"
deadline=$(( $(date +%s) + PROBE_WAIT_SECS ))
while :; do
    got=$(received)
    if [ "$got" -ge "$SESSIONS" ]; then
        ALL_SECS=$(python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.2f}')" "$PROBE_START" "$(date +%s.%N)")
        break
    fi
    [ "$(date +%s)" -ge "$deadline" ] && break
    sleep 0.2
done
RECEIVED=$(received)
PEAK_RSS=$(vm "$ROSEWIRE_PID" VmHWM)
log "received by $RECEIVED/$SESSIONS (all within: $ALL_SECS s); peak RSS $PEAK_RSS MiB"

# Close every session, then see whether the server gives the memory back and empties `who`.
CLIENT_ERRORS=$(cat "$WORK"/sessions/*.err | grep -c . || true)
stop_pids "${SESSION_PIDS[@]}"
SESSION_PIDS=()
for _ in $(seq 1 60); do [ "$(online)" -eq 0 ] && break; sleep 0.5; done
AFTER_ONLINE=$(online)
AFTER_RSS=$(vm "$ROSEWIRE_PID" VmRSS)
SERVER_ERRORS=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/rosewire/server.log" | grep -cE '^\S+ +(ERROR|WARN) ' || true)
kill -0 "$ROSEWIRE_PID" 2>/dev/null && SERVER_ALIVE=yes || SERVER_ALIVE=NO

# --- 5. report --------------------------------------------------------------------------
verdict() { python3 -c "import sys; print('met' if eval(sys.argv[1]) else 'NOT met')" "$1"; }
mkdir -p "$RESULTS_DIR"
{
    echo "# RoseWire foundation benchmark"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM,"
    echo "rosewire $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD -- src shell Cargo.toml 2>/dev/null || echo '+dirty'),"
    echo "openssh-server $(dpkg-query -W -f '${Version}' openssh-server 2>/dev/null || echo '?'), client $(ssh -V 2>&1)."
    echo
    echo "| figure | value | goal |"
    echo "|---|---|---|"
    for mode in default samekex; do
        if [ $mode = default ]; then kex="default kex"; else kex="both curve25519-sha256"; fi
        echo "| login ($kex), median wall time: \`ssh alice@rosewire who\` | $(jget ${mode}_ours_ms .1f) ms (min $(jget ${mode}_ours_min_ms .1f), max $(jget ${mode}_ours_max_ms .1f)) | |"
        echo "| login ($kex), median wall time: \`ssh $SSHD_USER@sshd true\` | $(jget ${mode}_sshd_ms .1f) ms (min $(jget ${mode}_sshd_min_ms .1f), max $(jget ${mode}_sshd_max_ms .1f)) | |"
        r=$(jget ${mode}_ratio .3f)
        if [ $mode = default ]; then
            echo "| login ratio ours/sshd ($kex; median over median, $LOGIN_RUNS runs each) | **$r** | ≤ 1.0: $(verdict "$r <= 1.0") |"
        else
            echo "| login ratio ours/sshd ($kex; median over median, $LOGIN_RUNS runs each) | $r | |"
        fi
        echo "| login ratio ours/sshd ($kex; median of per-pair ratios) | $(jget ${mode}_pair_ratio .3f) | |"
    done
    echo "| interactive (pty) sessions online at once | $ONLINE / $SESSIONS (connected in ${CONNECT_SECS} s, batches of $BATCH) | $SESSIONS |"
    echo "| sessions that received the one chat line | **$RECEIVED / $SESSIONS** (all within: $ALL_SECS s) | $SESSIONS: $(verdict "$RECEIVED >= $SESSIONS") |"
    echo "| server RSS idle (before sessions) | $IDLE_RSS MiB | |"
    echo "| server RSS with $SESSIONS sessions | $LOADED_RSS MiB | |"
    echo "| server peak RSS (VmHWM) | **$PEAK_RSS MiB** | < 150 MiB: $(verdict "$PEAK_RSS < 150") |"
    echo "| server RSS after all sessions closed | $AFTER_RSS MiB ($AFTER_ONLINE still listed by \`who\`) | |"
    echo "| server WARN/ERROR log lines; client stderr lines | $SERVER_ERRORS; $CLIENT_ERRORS | 0; 0 |"
    echo "| server still running at the end | $SERVER_ALIVE | yes |"
} >"$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS" # never a half-written table, even when interrupted
echo
cat "$RESULTS"
echo
log "written to ${RESULTS#"$ROOT"/}"
