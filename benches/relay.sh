#!/usr/bin/env bash
# RoseWire relay benchmark (issue 8, "Benchmark"): a file shared by bob on instance B,
# downloaded by users of instance A with `ssh A get ID > file`, so its bytes go B -> A ->
# client (a signed `GET /api/s2s/files/{id}`, each 16 KiB chunk group verified at A):
#   1. throughput of the relay against OpenSSH `sftp get` of the same file from Debian's
#      sshd, alternating runs (goal: ratio >= 0.8);
#   2. peak RSS of A and of B during a 1 GiB relay, above each one's idle RSS (goal < 64 MiB);
#   3. CONCURRENT relayed downloads at once: aggregate throughput against a single one;
#   4. the cost of chunk verification: the relay with and without it (only if the build has
#      an unverified mode, see UNVERIFIED_KEY; otherwise the row says n/a).
# See benches/README.md for what each figure means.
#
# Usage: benches/relay.sh            (from anywhere; needs loopback 127.0.0.22-25 and .29 only)
# Knobs (environment): SIZE_MIB=256 RSS_MIB=1024 (0: no RSS part) RUNS=5 WARMUP=1
#   CONCURRENT=10 (0: no concurrent part) VERIFY_RUNS=$RUNS KEEP=1 (keep the temp dir)
#   CIPHER=NAME (force one cipher on both, e.g. aes128-gcm@openssh.com; default: negotiated)
#   KEX=curve25519-sha256 (the key exchange forced on both; KEX= lets each pair negotiate)
#   UNVERIFIED_KEY=federation.dev_skip_verify (the config key, SECTION.KEY, that turns chunk
#     verification off on a downloading instance; used only if the binary knows it; UNVERIFIED_KEY=
#     skips part 4)
#   SEARCH_TIMEOUT=120 (seconds for A to find B's shared files)
#   NO_BUILD=1 (use the existing target/release/rosewire) ROSEWIRE_BIN=PATH (another build)
#   ROSEWIRE_LOG=info
#
# Network: loopback only: A on 127.0.0.22, B on 127.0.0.23, sshd on 127.0.0.24, A2 (A without
# verification, part 4 only) on 127.0.0.25, the OpenSSH clients from 127.0.0.29.
# Every loop is bounded in count and in time; every process started here is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZE_MIB=${SIZE_MIB:-256}
RSS_MIB=${RSS_MIB:-1024}
RUNS=${RUNS:-5}
WARMUP=${WARMUP:-1}
CONCURRENT=${CONCURRENT:-10}
VERIFY_RUNS=${VERIFY_RUNS:-$RUNS}
CIPHER=${CIPHER:-}
KEX=${KEX-curve25519-sha256}
UNVERIFIED_KEY=${UNVERIFIED_KEY-federation.dev_skip_verify}
A_IP=127.0.0.22
B_IP=127.0.0.23
SSHD_IP=127.0.0.24
A2_IP=127.0.0.25
CLIENT_IP=127.0.0.29
# Longest a client process may take to move N MiB: 4 MiB/s plus a minute. A hang fails the run.
client_timeout() { echo $((60 + $1 / 4)); }
# Longest the files may take to show up in A's search after they are shared on B.
SEARCH_TIMEOUT=${SEARCH_TIMEOUT:-120}
RESULTS_DIR="$ROOT/benches/results"
RESULTS="$RESULTS_DIR/relay-latest.md"

for knob in SIZE_MIB RSS_MIB RUNS WARMUP CONCURRENT VERIFY_RUNS; do
    [[ ${!knob} =~ ^[0-9]+$ ]] || { echo "$knob must be a whole number, not '${!knob}'" >&2; exit 2; }
done
if [ "$SIZE_MIB" -eq 0 ] || [ "$RUNS" -eq 0 ]; then echo "SIZE_MIB and RUNS must be at least 1" >&2; exit 2; fi
[ "$CONCURRENT" -le 64 ] || { echo "CONCURRENT must be at most 64" >&2; exit 2; }

# shellcheck source=benches/common.sh
. "$ROOT/benches/common.sh"

# --- 1. prerequisites ---------------------------------------------------------------------
need_install=()
[ -x /usr/sbin/sshd ] && [ -x /usr/lib/openssh/sftp-server ] || need_install+=(openssh-server openssh-sftp-server)
command -v ssh >/dev/null && command -v sftp >/dev/null && command -v ssh-keygen >/dev/null \
    || need_install+=(openssh-client)
command -v python3 >/dev/null || need_install+=(python3)
command -v cmp >/dev/null || need_install+=(diffutils)
install_packages "${need_install[@]}"
build_rosewire

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rosewire-bench-relay.XXXXXX")
PIDS=()
SSHD_PID=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pids "${PIDS[@]}" $SSHD_PID
    drop_work $rc
    exit $rc
}
trap cleanup EXIT
on_signal() { exit 130; }
trap on_signal INT TERM

# The same client options for both servers, for ssh and for sftp (hence -o, not -b/-c).
CLIENT_OPTS=(-o "BindAddress=$CLIENT_IP" -o BatchMode=yes -o StrictHostKeyChecking=no
    -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o LogLevel=ERROR
    -o ConnectTimeout=30 -o ControlMaster=no -o ControlPath=none -o Compression=no)
[ -n "$CIPHER" ] && CLIENT_OPTS+=(-o "Ciphers=$CIPHER")
# One key exchange for both: OpenSSH <-> sshd would otherwise pick sntrup761x25519 (~100 ms more
# client CPU per connection than curve25519), which is login cost, not transfer speed.
[ -n "$KEX" ] && CLIENT_OPTS+=(-o "KexAlgorithms=$KEX")

# --- 2. what this build supports ----------------------------------------------------------------
# Config keys are refused when unknown (deny_unknown_fields), so a key is written only when the
# binary holds its name (serde keeps field names as strings in the binary).
knows() { grep -qaF "$1" "$ROSEWIRE"; }
RELAY_SLOTS=
if knows relay_uploads_per_peer && knows relay_uploads; then
    # B's upload slots for A (default 4 per peer, 32 in all) would queue the concurrent
    # downloads (answered 429 past them): room for all of them, and a few more.
    RELAY_SLOTS=$((CONCURRENT + 4 > 32 ? CONCURRENT + 4 : 32))
fi
UNVERIFIED=
UNVERIFIED_WHY="n/a: no unverified mode in this build (looked for \`${UNVERIFIED_KEY:-?}\`)"
if [ -z "$UNVERIFIED_KEY" ]; then
    UNVERIFIED_WHY="n/a: skipped (UNVERIFIED_KEY=)"
elif [ "$VERIFY_RUNS" -eq 0 ]; then
    UNVERIFIED_WHY="n/a: skipped (VERIFY_RUNS=0)"
elif [[ $UNVERIFIED_KEY != *.* ]]; then
    die "UNVERIFIED_KEY must be SECTION.KEY, such as federation.dev_skip_verify"
elif knows "${UNVERIFIED_KEY#*.}"; then
    UNVERIFIED=$UNVERIFIED_KEY
fi
log "relay upload slots on B: ${RELAY_SLOTS:-not configurable in this build}; unverified mode: ${UNVERIFIED:-none}"

# --- 3. servers, users and the files ----------------------------------------------------------
mkdir -p "$WORK/sshd" "$WORK/keys" "$WORK/out" "$WORK/batch"
USERS=(alice bob)
for i in $(seq 1 "$CONCURRENT"); do USERS+=("$(printf 'dl%02d' "$i")"); done
for u in "${USERS[@]}"; do keygen "$WORK/keys/$u" "$u"; done
cat "$WORK/keys/alice.pub" >"$WORK/sshd/authorized_keys"

log "writing random files: $SIZE_MIB MiB, and $RSS_MIB MiB for the RSS part"
SRC="$WORK/small.bin"
BIG_SRC="$WORK/big.bin"
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$SRC"
[ "$(stat -c %s "$SRC")" -eq "$((SIZE_MIB << 20))" ] || die "short source file"
if [ "$RSS_MIB" -gt 0 ]; then
    head -c "$((RSS_MIB << 20))" /dev/urandom >"$BIG_SRC"
    [ "$(stat -c %s "$BIG_SRC")" -eq "$((RSS_MIB << 20))" ] || die "short big source file"
fi

start_sshd "$WORK/sshd" "$SSHD_IP" "Subsystem sftp /usr/lib/openssh/sftp-server"

# node_config DIR [SECTION.KEY]: quotas room for both files, the clients' connections all from
# one address let in at once, B's relay slots raised; SECTION.KEY = true added if given.
node_config() {
    local extra_section='' extra_key=''
    [ -z "${2:-}" ] || { extra_section=${2%%.*}; extra_key=${2#*.}; }
    local section
    for section in ssh library federation; do
        echo "[$section]"
        case $section in
            ssh) printf 'connections_per_minute_per_address = 100000\nmax_unauthenticated_per_address = 64\n' ;;
            library) printf 'quota_bytes = 17179869184\nmax_file_bytes = 4294967296\n' ;;
            federation) [ -z "$RELAY_SLOTS" ] \
                || printf 'relay_uploads = %s\nrelay_uploads_per_peer = %s\n' "$RELAY_SLOTS" "$RELAY_SLOTS" ;;
        esac
        [ "$extra_section" != "$section" ] || echo "$extra_key = true"
        echo
    done
    case $extra_section in
        "" | ssh | library | federation) ;;
        *) printf '[%s]\n%s = true\n' "$extra_section" "$extra_key" ;;
    esac
}

# start_node NAME IP [SECTION.KEY] [ARG...]: a federated instance named IP:HTTP_PORT. Sets
# NAME_PID, NAME_PORT, NAME_HTTP and NAME_DOMAIN.
start_node() {
    local name=$1 ip=$2 extra=$3 dir="$WORK/$1"
    shift 3
    mkdir -p "$dir"
    node_config "$dir" "$extra" >"$dir/config.toml"
    ROSEWIRE_DOMAIN="$ip:0" start_rosewire "$dir" "$ip" "$@"
    PIDS+=("$ROSEWIRE_PID")
    eval "${name}_PID=$ROSEWIRE_PID ${name}_PORT=$OURS_PORT ${name}_HTTP=$OURS_HTTP_PORT ${name}_DOMAIN=$OURS_DOMAIN"
    log "$name: pid $ROSEWIRE_PID, domain $OURS_DOMAIN, ssh port $OURS_PORT"
}
A_PID='' A_PORT='' A_DOMAIN='' B_PID='' B_PORT='' B_HTTP='' B_DOMAIN='' A2_PID='' A2_PORT=''
start_node B "$B_IP" ""
start_node A "$A_IP" "" --bootstrap "http://$B_IP:$B_HTTP"
[ -z "$UNVERIFIED" ] || start_node A2 "$A2_IP" "$UNVERIFIED" --bootstrap "http://$B_IP:$B_HTTP"
log "sshd pid $SSHD_PID on $SSHD_IP:$SSHD_PORT"

on() { # on IP PORT USER COMMAND...: one exec command on a RoseWire instance
    local ip=$1 port=$2 u=$3; shift 3
    timeout 60 ssh -p "$port" "${CLIENT_OPTS[@]}" -i "$WORK/keys/$u" "$u@$ip" "$@" </dev/null
}
theirs() { timeout 60 ssh -p "$SSHD_PORT" "${CLIENT_OPTS[@]}" -i "$WORK/keys/alice" "$SSHD_USER@$SSHD_IP" "$@" </dev/null; }
# Every user logs in once before anything is timed (the first login creates the account).
on "$B_IP" "$B_PORT" bob who >/dev/null || die "ssh bob@B who failed: $(tail -5 "$WORK/B/server.log")"
for u in "${USERS[@]}"; do
    [ "$u" = bob ] && continue
    on "$A_IP" "$A_PORT" "$u" who >/dev/null || die "ssh $u@A who failed: $(tail -5 "$WORK/A/server.log")"
done
[ -z "$A2_PID" ] || on "$A2_IP" "$A2_PORT" alice who >/dev/null || die "ssh alice@A2 who failed"
theirs true || die "ssh $SSHD_USER@$SSHD_IP true failed; sshd log: $(cat "$WORK/sshd/sshd.log")"

# The instances must know each other before B's shares can reach A (bounded poll).
peers_of() { # peers_of IP PORT: the domains the instance knows, one a line
    on "$1" "$2" alice peers --json 2>/dev/null \
        | python3 -c 'import json, sys
for line in sys.stdin:
    try: print(json.loads(line)["domain"])
    except (ValueError, KeyError, TypeError): pass' || true
}
converged=
for _ in $(seq 1 120); do # up to 60 s and 120 asks of each
    if peers_of "$A_IP" "$A_PORT" | grep -qxF "$B_DOMAIN" && peers_of "$B_IP" "$B_PORT" | grep -qxF "$A_DOMAIN" \
        && { [ -z "$A2_PID" ] || peers_of "$A2_IP" "$A2_PORT" | grep -qxF "$B_DOMAIN"; }; then
        converged=yes
        break
    fi
    sleep 0.5
done
[ -n "$converged" ] || die "A and B do not know each other after 60 s; A knows: $(peers_of "$A_IP" "$A_PORT" | tr '\n' ' '); B knows: $(peers_of "$B_IP" "$B_PORT" | tr '\n' ' ')"
log "A and B know each other"

IDLE_START=$(printf 'A %s MiB, B %s MiB' "$(vm "$A_PID" VmRSS)" "$(vm "$B_PID" VmRSS)")
log "RSS after start and logins: $IDLE_START"

# Which cipher each pair negotiates: the throughput is mostly the cipher's.
cipher_of() { # cipher_of PORT USER@HOST KEY COMMAND: "CIPHER (MAC ..., kex ...)"
    local v
    v=$(timeout 60 ssh -v -p "$1" "${CLIENT_OPTS[@]}" -o LogLevel=DEBUG1 -i "$3" "$2" "$4" </dev/null 2>&1 >/dev/null) || true
    printf '%s (MAC %s, kex %s)' \
        "$(sed -n 's/.*kex: server->client cipher: \([^ ]*\) MAC.*/\1/p' <<<"$v" | head -1)" \
        "$(sed -n 's/.*kex: server->client cipher: [^ ]* MAC: \([^ ]*\).*/\1/p' <<<"$v" | head -1)" \
        "$(sed -n 's/.*kex: algorithm: \([^ ]*\).*/\1/p' <<<"$v" | head -1)"
}
OURS_CIPHER=$(cipher_of "$A_PORT" "alice@$A_IP" "$WORK/keys/alice" who)
SSHD_CIPHER=$(cipher_of "$SSHD_PORT" "$SSHD_USER@$SSHD_IP" "$WORK/keys/alice" true)
log "cipher: A $OURS_CIPHER, sshd $SSHD_CIPHER"
case $OURS_CIPHER in " "*) die "could not tell which cipher RoseWire negotiates";; esac
[ "${OURS_CIPHER%% *}" = "${SSHD_CIPHER%% *}" ] \
    || die "the two servers negotiate different ciphers (A '$OURS_CIPHER', sshd '$SSHD_CIPHER'); set CIPHER=... to one both support"

# share_on_b FILE NAME: uploads FILE into bob's library on B as NAME, shares it, prints its id.
share_on_b() {
    local file=$1 name=$2 mib to id
    mib=$(($(stat -c %s "$file") >> 20))
    to=$(client_timeout "$mib")
    log "uploading $name ($mib MiB) to bob's library on B"
    printf 'put "%s" "library/%s"\n' "$file" "$name" >"$WORK/batch/put-$name"
    timeout "$to" sftp -P "$B_PORT" "${CLIENT_OPTS[@]}" -i "$WORK/keys/bob" -b "$WORK/batch/put-$name" "bob@$B_IP" \
        </dev/null >/dev/null || die "uploading $name to B failed or took over ${to}s: $(tail -3 "$WORK/B/server.log")"
    on "$B_IP" "$B_PORT" bob share "$name" >/dev/null || die "share $name on B failed"
    id=$(on "$B_IP" "$B_PORT" bob library --json | python3 -c '
import json, sys
for line in sys.stdin:
    f = json.loads(line)
    if f["name"] == sys.argv[1]:
        print(f["id"])' "$name")
    [ -n "$id" ] || die "$name is not in bob's library on B"
    echo "$id"
}

# seen_on IP PORT QUERY ID: whether a search on that instance lists ID as a file of bob on B.
seen_on() {
    on "$1" "$2" alice search "$3" --json 2>/dev/null | python3 -c '
import json, sys
want, owner = sys.argv[1], sys.argv[2]
for line in sys.stdin:
    try:
        f = json.loads(line)
    except ValueError:
        continue
    if f.get("id") == want and str(f.get("owner", "")).lstrip("@") == owner:
        sys.exit(0)
sys.exit(1)' "$4" "bob@$B_DOMAIN"
}

# wait_shared QUERY ID: bounded poll until A (and A2) find ID with a search.
wait_shared() {
    local t0=$SECONDS _
    for _ in $(seq 1 $((SEARCH_TIMEOUT * 2))); do
        if seen_on "$A_IP" "$A_PORT" "$1" "$2" && { [ -z "$A2_PID" ] || seen_on "$A2_IP" "$A2_PORT" "$1" "$2"; }; then
            log "A finds $1 ($2) after $((SECONDS - t0)) s"
            return 0
        fi
        [ $((SECONDS - t0)) -lt "$SEARCH_TIMEOUT" ] || break
        sleep 0.5
    done
    die "A does not find $1 (id $2, shared by bob@$B_DOMAIN) within ${SEARCH_TIMEOUT}s; A's search answers: $(on "$A_IP" "$A_PORT" alice search "$1" --json 2>&1 | head -3)"
}

SMALL_ID=$(share_on_b "$SRC" relaysmall.bin)
BIG_ID=
[ "$RSS_MIB" -eq 0 ] || BIG_ID=$(share_on_b "$BIG_SRC" relaybig.bin)
wait_shared relaysmall "$SMALL_ID"
[ -z "$BIG_ID" ] || wait_shared relaybig "$BIG_ID"

# --- 4. the runs -------------------------------------------------------------------------------
log "measuring: ${RSS_MIB} MiB relay for RSS; $RUNS alternating runs relay/sftp (+ $WARMUP warm-up);" \
    "$CONCURRENT concurrent; verification cost: ${UNVERIFIED:-n/a}"
rc=0
MD_BODY=$(RB_WORK="$WORK" RB_SRC="$SRC" RB_BIG_SRC="$BIG_SRC" RB_SIZE_MIB="$SIZE_MIB" RB_RSS_MIB="$RSS_MIB" \
    RB_RUNS="$RUNS" RB_WARMUP="$WARMUP" RB_CONCURRENT="$CONCURRENT" RB_VERIFY_RUNS="$VERIFY_RUNS" \
    RB_A_IP="$A_IP" RB_A_PORT="$A_PORT" RB_A_PID="$A_PID" RB_B_PID="$B_PID" \
    RB_A2_IP="$A2_IP" RB_A2_PORT="$A2_PORT" RB_A2_PID="$A2_PID" RB_UNVERIFIED_WHY="$UNVERIFIED_WHY" \
    RB_SSHD_IP="$SSHD_IP" RB_SSHD_PORT="$SSHD_PORT" RB_SSHD_USER="$SSHD_USER" RB_SSHD_PID="$SSHD_PID" \
    RB_SMALL_ID="$SMALL_ID" RB_BIG_ID="$BIG_ID" \
    python3 - "${CLIENT_OPTS[@]}" <<'PY'
import os, resource, statistics, subprocess, sys, threading, time

E = os.environ
work, src, big_src = E["RB_WORK"], E["RB_SRC"], E["RB_BIG_SRC"]
size_mib, rss_mib = int(E["RB_SIZE_MIB"]), int(E["RB_RSS_MIB"])
runs, warmup = int(E["RB_RUNS"]), int(E["RB_WARMUP"])
concurrent, verify_runs = int(E["RB_CONCURRENT"]), int(E["RB_VERIFY_RUNS"])
a_pid, b_pid, sshd_pid = int(E["RB_A_PID"]), int(E["RB_B_PID"]), int(E["RB_SSHD_PID"])
a2_pid = int(E["RB_A2_PID"]) if E["RB_A2_PID"] else None
small_id, big_id = E["RB_SMALL_ID"], E["RB_BIG_ID"]
opts = sys.argv[1:]
TICK = os.sysconf("SC_CLK_TCK")
NODES = {"A": (E["RB_A_IP"], E["RB_A_PORT"]), "A2": (E["RB_A2_IP"], E["RB_A2_PORT"])}
RELAY_MISSING = 3  # exit status: this build has no relay yet


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def timeout_for(mib):  # seconds one client process may take to move `mib` MiB
    return 60 + mib // 4


def status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid):
    return status_kib(pid, "VmRSS")


def reset_hwm(pid):
    """Resets VmHWM to the current RSS (Linux >= 4.0: `5` into clear_refs); False if refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def tree_rss_kib(root):
    """VmRSS summed over `root` and its descendants (sshd: listener, per-connection
    processes and sftp-server)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    total, todo = 0, [root]
    while todo:
        p = todo.pop()
        total += rss_kib(p)
        todo.extend(children.get(p, []))
    return total


def cpu_secs(pid, with_children=False):
    """utime+stime of a process (all threads); with_children adds its reaped children's."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    t = int(fields[11]) + int(fields[12])
    if with_children:
        t += int(fields[13]) + int(fields[14])
    return t / TICK


class Sampler:
    """Samples the RSS of some processes every 50 ms while transfers run: {name: pid};
    a name starting with "sshd" is sampled with all its descendants."""
    def __init__(self, pids, limit):
        self.pids, self.limit, self.stop = pids, limit, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
    def sample(self):
        return {n: tree_rss_kib(p) if n.startswith("sshd") else rss_kib(p)
                for n, p in self.pids.items()}
    def take(self):
        for n, v in self.sample().items():
            self.peak[n] = max(self.peak[n], v)
    def run(self):
        deadline = time.monotonic() + self.limit
        while not self.stop.is_set() and time.monotonic() < deadline:
            self.take()
            self.stop.wait(0.05)
    def __enter__(self):
        self.start = self.sample()
        self.peak = dict(self.start)
        self.thread.start()
        return self
    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.take()


class Cpu:
    """CPU seconds of the servers (and of this driver's reaped children: the clients) over a block."""
    def __init__(self, pids):
        self.pids = pids
    def read(self):
        out = {n: cpu_secs(p, n.startswith("sshd")) for n, p in self.pids.items()}
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        out["client"] = ru.ru_utime + ru.ru_stime
        return out
    def __enter__(self):
        self.t0 = self.read()
        return self
    def __exit__(self, *exc):
        time.sleep(0.1)  # let sshd's listener reap the connection's processes
        t1 = self.read()
        self.used = {n: t1[n] - self.t0[n] for n in t1}


def fail(what, returncode, err):
    text = err.decode(errors="replace").strip()
    if "relay" in text and "not available" in text:
        log(f"RELAY NOT AVAILABLE: {what}: {text}")
        sys.exit(RELAY_MISSING)
    sys.exit(f"{what}: exit {returncode}: {text}")


def run_client(cmd, stdout, limit, what):
    # Its own process group, so that a hung sftp and the ssh it started are killed together.
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        _, err = p.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        p.wait()
        sys.exit(f"{what}: still running after {limit} s (hung?); killed")
    if p.returncode != 0:
        fail(what, p.returncode, err)


def relay_cmd(node, user, file_id):
    ip, port = NODES[node]
    return ["ssh", "-p", port, *opts, "-i", f"{work}/keys/{user}", f"{user}@{ip}", "get", file_id]


def sftp_get_cmd(path, out, n):
    batch = f"{work}/batch/get-{n}"
    with open(batch, "w") as f:
        f.write(f'get "{path}" "{out}"\n')
    return ["sftp", "-P", E["RB_SSHD_PORT"], *opts, "-i", f"{work}/keys/alice", "-b", batch,
            f"{E['RB_SSHD_USER']}@{E['RB_SSHD_IP']}"]


def check_and_drop(reference, path, what):
    r = subprocess.run(["cmp", "-s", reference, path], timeout=600)
    if r.returncode != 0:
        sys.exit(f"{what}: {path} differs from the source file (size {os.path.getsize(path)})")
    os.remove(path)


SERVERS = {"A": a_pid, "B": b_pid}
n = 0


def transfer(side, file_id=None, reference=None, mib=None):
    """One download by alice, timed: side "A" / "A2" (relay through that instance) or "sshd"
    (sftp get). Returns (wall, sampler, cpu)."""
    global n
    n += 1
    file_id, reference, mib = file_id or small_id, reference or src, mib or size_mib
    out = f"{work}/out/{side}-{n}.bin"
    limit = timeout_for(mib)
    if side == "sshd":
        pids, what = {"sshd": sshd_pid}, f"sftp get #{n}"
        cmd, stdout = sftp_get_cmd(reference, out, n), subprocess.DEVNULL
    else:
        pids, what = dict(SERVERS), f"get via {side} #{n}"
        cmd, stdout = relay_cmd(side, "alice", file_id), open(out, "wb")
    try:
        with Cpu(pids) as cpu, Sampler(pids, limit + 60) as s:
            t = time.perf_counter()
            run_client(cmd, stdout, limit, what)
            wall = time.perf_counter() - t
    finally:
        if stdout is not subprocess.DEVNULL:
            stdout.close()
    check_and_drop(reference, out, what)
    os.sync()  # no dirty pages from one run left to be written back during the next
    return wall, s, cpu.used


def verdict(ok):
    return "met" if ok else "**NOT met**"


def mib(kib):
    return kib / 1024


rows = []

# --- RSS during a big relay, first: before any other relay grew the allocators ---------------
if rss_mib > 0:
    idle = {k: rss_kib(p) for k, p in SERVERS.items()}
    hwm_reset = all(reset_hwm(p) for p in SERVERS.values())
    log(f"RSS before the {rss_mib} MiB relay: A {mib(idle['A']):.1f} MiB, B {mib(idle['B']):.1f} MiB")
    wall, s, cpu = transfer("A", big_id, big_src, rss_mib)
    hwm = {k: status_kib(p, "VmHWM") for k, p in SERVERS.items()}
    log(f"{rss_mib} MiB relay: {wall:.2f} s = {rss_mib / wall:.0f} MiB/s; peak RSS A {mib(s.peak['A']):.1f}, "
        f"B {mib(s.peak['B']):.1f} MiB")
    rows.append(f"| {rss_mib} MiB relay (for the RSS figures; the first relay of the run): wall time; CPU of A, B, client "
                f"| {wall:.2f} s = {rss_mib / wall:.0f} MiB/s; {cpu['A']:.2f} s, {cpu['B']:.2f} s, {cpu['client']:.2f} s | for context |")
    for k in ("A", "B"):
        rise = mib(max(s.peak[k], hwm[k] if hwm_reset else 0) - idle[k])
        hwm_text = f"VmHWM {mib(hwm[k]):.1f}" if hwm_reset else f"VmHWM not resettable, lifetime {mib(hwm[k]):.1f}"
        rows.append(f"| **{k} peak RSS above idle during the {rss_mib} MiB relay** (50 ms samples and VmHWM) "
                    f"| **+{rise:.1f} MiB** (idle {mib(idle[k]):.1f}; peak sampled {mib(s.peak[k]):.1f}; {hwm_text}) "
                    f"| < 64 MiB: {verdict(rise < 64)} |")

# --- throughput: relay against sftp get, alternating -------------------------------------------
results = {"A": [], "sshd": []}
for i in range(-warmup, runs):
    for side in (("A", "sshd") if i % 2 == 0 else ("sshd", "A")):  # alternate who goes first
        wall, s, cpu = transfer(side)
        if i >= 0:
            results[side].append((wall, s.peak, cpu))
        server = f"A {cpu['A']:5.2f} s, B {cpu['B']:5.2f} s" if side == "A" else f"sshd {cpu['sshd']:5.2f} s"
        log(f"{'warm-up' if i < 0 else f'run {i + 1}/{runs}'} {'relay' if side == 'A' else 'sftp get':8} "
            f"{wall:6.2f} s {size_mib / wall:7.1f} MiB/s  CPU {server}, client {cpu['client']:5.2f} s")


def med(side, f=lambda r: r[0]):
    return statistics.median(f(r) for r in results[side])


labels = {"A": "`ssh A get ID` (relay B → A → client)", "sshd": "`sftp get` from sshd"}
for side in ("A", "sshd"):
    walls = [r[0] for r in results[side]]
    w = statistics.median(walls)
    rows.append(f"| {labels[side]}, {size_mib} MiB: median wall time (min–max) "
                f"| {w:.2f} s ({min(walls):.2f}–{max(walls):.2f}) = {size_mib / w:.0f} MiB/s | |")
rows.append(f"| relay CPU (median): A, B, client | {med('A', lambda r: r[2]['A']):.2f} s, {med('A', lambda r: r[2]['B']):.2f} s, "
            f"{med('A', lambda r: r[2]['client']):.2f} s | |")
rows.append(f"| sftp CPU (median): sshd (all its processes), client | {med('sshd', lambda r: r[2]['sshd']):.2f} s, "
            f"{med('sshd', lambda r: r[2]['client']):.2f} s | |")
single = size_mib / med("A")
ratio = med("sshd") / med("A")
pairs = statistics.median(t[0] / o[0] for o, t in zip(results["A"], results["sshd"]))
rows.append(f"| **throughput ratio relay/sftp** (median over median; median of pairs) "
            f"| **{ratio:.2f}**; {pairs:.2f} | ≥ 0.8: {verdict(ratio >= 0.8)} |")
rows.append(f"| peak RSS during the {size_mib} MiB runs: A, B; sshd (all its processes) "
            f"| {mib(max(r[1]['A'] for r in results['A'])):.1f} MiB, {mib(max(r[1]['B'] for r in results['A'])):.1f} MiB; "
            f"{mib(max(r[1]['sshd'] for r in results['sshd'])):.1f} MiB | for context |")

# --- concurrent relayed downloads ---------------------------------------------------------------
if concurrent > 0:
    users = [f"dl{i:02d}" for i in range(1, concurrent + 1)]
    limit = timeout_for(size_mib * concurrent)
    outs = [f"{work}/out/concurrent-{u}.bin" for u in users]
    ends, errors = {}, {}

    def one(u, out, p):
        try:
            _, err = p.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            p.wait()
            errors[u] = f"still running after {limit} s (hung?); killed"
            return
        ends[u] = time.perf_counter()
        if p.returncode != 0:
            errors[u] = (p.returncode, err)

    with Cpu(SERVERS) as cpu, Sampler(SERVERS, limit + 60) as s:
        files = [open(o, "wb") for o in outs]
        t = time.perf_counter()
        procs = [subprocess.Popen(relay_cmd("A", u, small_id), stdin=subprocess.DEVNULL, stdout=f,
                                  stderr=subprocess.PIPE, start_new_session=True)
                 for u, f in zip(users, files)]
        threads = [threading.Thread(target=one, args=(u, o, p)) for u, o, p in zip(users, outs, procs)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t
        for f in files:
            f.close()
    for u in users:
        if u in errors:
            e = errors[u]
            if isinstance(e, str):
                sys.exit(f"concurrent get by {u}: {e}")
            fail(f"concurrent get by {u}", *e)
    for u, o in zip(users, outs):
        check_and_drop(src, o, f"concurrent get by {u}")
    os.sync()
    each = sorted(ends[u] - t for u in users)
    aggregate = concurrent * size_mib / wall
    log(f"{concurrent} concurrent: last done after {wall:.2f} s = {aggregate:.0f} MiB/s together")
    rows.append(f"| {concurrent} concurrent relayed downloads of the {size_mib} MiB file (one user each): "
                f"wall time until the last finished; each one (first–median–last) "
                f"| {wall:.2f} s; {each[0]:.2f}–{statistics.median(each):.2f}–{each[-1]:.2f} s | |")
    rows.append(f"| {concurrent} concurrent: CPU of A, B, clients; peak RSS A, B "
                f"| {cpu.used['A']:.2f} s, {cpu.used['B']:.2f} s, {cpu.used['client']:.2f} s; "
                f"{mib(s.peak['A']):.1f} MiB, {mib(s.peak['B']):.1f} MiB | for context |")
    rows.append(f"| **{concurrent} concurrent: aggregate throughput; against a single relayed download** "
                f"| **{aggregate:.0f} MiB/s; {aggregate / single:.2f}×** (single: {single:.0f} MiB/s, the median of the alternating runs) | |")

# --- cost of verification ----------------------------------------------------------------------
if a2_pid is None:
    rows.append(f"| cost of chunk verification (relay without / with it) | {E['RB_UNVERIFIED_WHY']} | |")
else:
    SERVERS["A2"] = a2_pid
    ver = {"A": [], "A2": []}
    for i in range(verify_runs):
        for side in (("A", "A2") if i % 2 == 0 else ("A2", "A")):
            wall, s, cpu = transfer(side)
            ver[side].append((wall, cpu[side]))
            log(f"verification run {i + 1}/{verify_runs} {'verified' if side == 'A' else 'unverified':10} "
                f"{wall:6.2f} s {size_mib / wall:7.1f} MiB/s  CPU of the downloading instance {cpu[side]:5.2f} s")
    wv = statistics.median(r[0] for r in ver["A"])
    wu = statistics.median(r[0] for r in ver["A2"])
    cv = statistics.median(r[1] for r in ver["A"])
    cu = statistics.median(r[1] for r in ver["A2"])
    rows.append(f"| relay with chunk verification (A) / without (A2), {size_mib} MiB: median wall time; "
                f"CPU of the downloading instance | {wv:.2f} s = {size_mib / wv:.0f} MiB/s, {cv:.2f} s / "
                f"{wu:.2f} s = {size_mib / wu:.0f} MiB/s, {cu:.2f} s | |")
    kept = wu / wv  # throughput with verification over throughput without
    cost = f"verification costs {(1 - kept) * 100:.0f} % of the throughput" if kept < 1 else "no cost measured (within noise)"
    rows.append(f"| **cost of chunk verification**: throughput with / without; CPU added at the downloading instance "
                f"| **{kept:.2f}**: {cost}; {cv - cu:+.2f} s per {size_mib} MiB | for context |")

for k, p in SERVERS.items():
    rows.append(f"| {k} RSS after all transfers | {mib(rss_kib(p)):.1f} MiB | |")
print("\n".join(rows))
PY
) || rc=$?
if [ $rc -eq 3 ]; then
    die "the relay is not available in this build ($ROSEWIRE): \`ssh A get ID\` of bob's file on B was refused (see above). Everything before it worked: sshd, A and B started and federated, the files uploaded to B, shared, found by a search on A. Build a rosewire with the relay (branch h-relay, issue 8) and run again."
fi
[ $rc -eq 0 ] || die "measurement failed (exit $rc)"

STATE=
for n in A B A2; do
    pid_var=${n}_PID
    [ -n "${!pid_var}" ] || continue
    warns=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/$n/server.log" | grep -cE '^\S+ +(ERROR|WARN) ' || true)
    kill -0 "${!pid_var}" 2>/dev/null && alive=yes || alive=NO

    STATE+="| $n server WARN/ERROR log lines; still running at the end | $warns; $alive | 0; yes |"$'\n'
done

# --- 5. report --------------------------------------------------------------------------------
mkdir -p "$RESULTS_DIR"
{
    echo "# RoseWire relay benchmark"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, load average before $(cut -d' ' -f1-3 /proc/loadavg),"
    echo "rosewire $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD -- src shell Cargo.toml 2>/dev/null || echo "+dirty (diff $(git diff HEAD -- src shell Cargo.toml | sha256sum | cut -c1-12))")${ROSEWIRE_BIN:+ (but measured: ROSEWIRE_BIN=$ROSEWIRE_BIN)},"
    echo "openssh-server $(dpkg-query -W -f '${Version}' openssh-server 2>/dev/null || echo '?'), client $(ssh -V 2>&1)."
    echo "bob's files on B ($B_DOMAIN), downloaded through A ($A_DOMAIN) with \`ssh A get ID > file\`; a $SIZE_MIB MiB file,"
    echo "$RUNS alternating runs relay/sftp after $WARMUP warm-up; RSS during one $RSS_MIB MiB relay; $CONCURRENT concurrent downloads;"
    echo "relay upload slots on B: ${RELAY_SLOTS:-defaults, not configurable in this build}; RSS after start: $IDLE_START;"
    echo "cipher (client ↔ A and client ↔ sshd): A $OURS_CIPHER, sshd $SSHD_CIPHER${CIPHER:+ (cipher forced)}; every download compared with \`cmp\`."
    echo
    echo "| figure | value | goal |"
    echo "|---|---|---|"
    echo "$MD_BODY"
    printf '%s' "$STATE"
} >"$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS"
echo
cat "$RESULTS"
echo
log "written to ${RESULTS#"$ROOT"/}"
