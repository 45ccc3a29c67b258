#!/usr/bin/env bash
# RoseWire library benchmark: moving one big file through RoseWire and through Debian's
# OpenSSH server (sshd + sftp-server), with the same OpenSSH client, alternating runs:
#   - `sftp put` and `sftp get`, ours vs sftp-server;
#   - `ssh host get ID > file` (ours) vs `ssh host cat FILE > file` (sshd);
# throughput ratios, and the RSS of our server (sampled every 50 ms) during the transfers.
# See benches/README.md for what each figure means.
#
# Usage: benches/library.sh              (from anywhere; needs loopback 127.0.0.12/13/19 only)
# Knobs (environment): SIZE_MIB=256 RUNS=5 WARMUP=1 BASELINE_RUNS=5 KEEP=1 (keep the temp dir)
#   CIPHER=NAME (force one cipher on both, e.g. aes128-gcm@openssh.com; default: negotiated)
#   KEX=curve25519-sha256 (the key exchange forced on both; KEX= lets each pair negotiate)
#   NO_BUILD=1 (use the existing target/release/rosewire) ROSEWIRE_BIN=PATH (another build)
#
# Network: loopback only. Every loop is bounded in count and in time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZE_MIB=${SIZE_MIB:-256}
RUNS=${RUNS:-5}
WARMUP=${WARMUP:-1}
BASELINE_RUNS=${BASELINE_RUNS:-5}
CIPHER=${CIPHER:-}
KEX=${KEX-curve25519-sha256}
OURS_IP=127.0.0.12
SSHD_IP=127.0.0.13
CLIENT_IP=127.0.0.19
# Longest one client process may take: a transfer at 4 MiB/s plus a minute. A hang fails the run.
CLIENT_TIMEOUT=$((60 + SIZE_MIB / 4))
RESULTS_DIR="$ROOT/benches/results"
RESULTS="$RESULTS_DIR/library-latest.md"

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

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rosewire-bench-library.XXXXXX")
ROSEWIRE_PID=
SSHD_PID=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pids $ROSEWIRE_PID $SSHD_PID
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

# --- 2. servers and the file ----------------------------------------------------------------
mkdir -p "$WORK/sshd/up" "$WORK/rosewire" "$WORK/keys" "$WORK/out" "$WORK/batch"
keygen "$WORK/keys/alice" alice
keygen "$WORK/keys/bob" bob
cat "$WORK/keys/alice.pub" "$WORK/keys/bob.pub" >"$WORK/sshd/authorized_keys"

log "writing a $SIZE_MIB MiB random file"
SRC="$WORK/src.bin"
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$SRC"
[ "$(stat -c %s "$SRC")" -eq "$((SIZE_MIB << 20))" ] || die "short source file"

start_sshd "$WORK/sshd" "$SSHD_IP" "Subsystem sftp /usr/lib/openssh/sftp-server"

# Room for the reference copy plus one upload at a time (each is deleted after its run).
cat >"$WORK/rosewire/config.toml" <<EOF
[ssh]
connections_per_minute_per_address = 100000

[library]
quota_bytes = 8589934592
max_file_bytes = 4294967296
EOF
start_rosewire "$WORK/rosewire" "$OURS_IP"
log "rosewire pid $ROSEWIRE_PID on $OURS_IP:$OURS_PORT; sshd pid $SSHD_PID on $SSHD_IP:$SSHD_PORT"

ours() { # ours USER COMMAND...
    local u=$1; shift
    timeout 60 ssh -p "$OURS_PORT" "${CLIENT_OPTS[@]}" -i "$WORK/keys/$u" "$u@$OURS_IP" "$@" </dev/null
}
theirs() { timeout 60 ssh -p "$SSHD_PORT" "${CLIENT_OPTS[@]}" -i "$WORK/keys/alice" "$SSHD_USER@$SSHD_IP" "$@" </dev/null; }
ours alice who >/dev/null || die "ssh alice@$OURS_IP who failed: $(tail -5 "$WORK/rosewire/server.log")"
ours bob who >/dev/null || die "ssh bob@$OURS_IP who failed"
theirs true || die "ssh $SSHD_USER@$SSHD_IP true failed; sshd log: $(cat "$WORK/sshd/sshd.log")"

IDLE_RSS=$(vm "$ROSEWIRE_PID" VmRSS)
log "rosewire idle RSS $IDLE_RSS MiB"

# Which cipher each pair negotiates: the throughput is mostly the cipher's.
cipher_of() { # cipher_of PORT USER@HOST KEY COMMAND: "CIPHER (MAC ..., kex ...)"
    local v
    v=$(timeout 60 ssh -v -p "$1" "${CLIENT_OPTS[@]}" -o LogLevel=DEBUG1 -i "$3" "$2" "$4" </dev/null 2>&1 >/dev/null) || true
    printf '%s (MAC %s, kex %s)' \
        "$(sed -n 's/.*kex: server->client cipher: \([^ ]*\) MAC.*/\1/p' <<<"$v" | head -1)" \
        "$(sed -n 's/.*kex: server->client cipher: [^ ]* MAC: \([^ ]*\).*/\1/p' <<<"$v" | head -1)" \
        "$(sed -n 's/.*kex: algorithm: \([^ ]*\).*/\1/p' <<<"$v" | head -1)"
}
OURS_CIPHER=$(cipher_of "$OURS_PORT" "alice@$OURS_IP" "$WORK/keys/alice" who)
SSHD_CIPHER=$(cipher_of "$SSHD_PORT" "$SSHD_USER@$SSHD_IP" "$WORK/keys/alice" true)
log "cipher: ours $OURS_CIPHER, sshd $SSHD_CIPHER"
case $OURS_CIPHER in " "*) die "could not tell which cipher RoseWire negotiates";; esac
[ "${OURS_CIPHER%% *}" = "${SSHD_CIPHER%% *}" ] \
    || die "the two servers negotiate different ciphers (ours '$OURS_CIPHER', sshd '$SSHD_CIPHER'); set CIPHER=... to one both support"

# The reference copy in alice's library: what `sftp get` and `get ID` read.
printf 'put "%s" "library/ref.bin"\n' "$SRC" >"$WORK/batch/ref"
timeout "$CLIENT_TIMEOUT" sftp -P "$OURS_PORT" "${CLIENT_OPTS[@]}" -i "$WORK/keys/alice" -b "$WORK/batch/ref" "alice@$OURS_IP" \
    </dev/null >/dev/null || die "uploading the reference file failed or took over ${CLIENT_TIMEOUT}s: $(tail -3 "$WORK/rosewire/server.log")"
ours alice share ref.bin >/dev/null || die "share ref.bin failed"
REF_ID=$(ours alice library --json | python3 -c '
import json, sys
for line in sys.stdin:
    f = json.loads(line)
    if f["name"] == "ref.bin":
        print(f["id"])' )
[ -n "$REF_ID" ] || die "ref.bin is not in alice's library"
log "reference file id $REF_ID"

# --- 3. the runs ---------------------------------------------------------------------------
log "measuring: $RUNS alternating runs of each transfer (+ $WARMUP warm-up), $BASELINE_RUNS connection baselines"
MD_BODY=$(python3 - "$WORK" "$SRC" "$SIZE_MIB" "$RUNS" "$WARMUP" "$BASELINE_RUNS" "$OURS_IP" "$OURS_PORT" \
    "$SSHD_IP" "$SSHD_PORT" "$SSHD_USER" "$ROSEWIRE_PID" "$SSHD_PID" "$REF_ID" "$IDLE_RSS" "$CLIENT_TIMEOUT" \
    "${CLIENT_OPTS[@]}" <<'PY'
import os, resource, statistics, subprocess, sys, threading, time

(work, src, size_mib, runs, warmup, baseline_runs, ours_ip, ours_port, sshd_ip, sshd_port,
 sshd_user, ours_pid, sshd_pid, ref_id, idle_rss, timeout) = sys.argv[1:17]
opts = sys.argv[17:]
size_mib, runs, warmup, baseline_runs = int(size_mib), int(runs), int(warmup), int(baseline_runs)
ours_pid, sshd_pid, idle_rss = int(ours_pid), int(sshd_pid), float(idle_rss)
size = size_mib << 20
TICK = os.sysconf("SC_CLK_TCK")
KEY = {u: f"{work}/keys/{u}" for u in ("alice", "bob")}
TIMEOUT = int(timeout)  # seconds one client process may take

def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0

def tree_rss_kib(root):
    """VmRSS summed over `root` and its descendants (sshd: listener, per-connection
    processes, the shell and sftp-server or cat)."""
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
    """Samples the measured server's RSS every 50 ms while a transfer runs."""
    def __init__(self, side):
        self.side, self.peak, self.stop = side, 0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
    def sample(self):
        return rss_kib(ours_pid) if self.side == "ours" else tree_rss_kib(sshd_pid)
    def run(self):
        deadline = time.monotonic() + TIMEOUT + 60
        while not self.stop.is_set() and time.monotonic() < deadline:
            self.peak = max(self.peak, self.sample())
            self.stop.wait(0.05)
    def __enter__(self):
        self.start = self.peak = self.sample()
        self.thread.start()
        return self
    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.sample())

def run_client(cmd, stdout=subprocess.DEVNULL, what=""):
    # Its own process group, so that a hung sftp and the ssh it started are killed together.
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        _, err = p.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        p.wait()
        sys.exit(f"{what or cmd}: still running after {TIMEOUT} s (hung?); killed")
    if p.returncode != 0:
        sys.exit(f"{what or cmd}: exit {p.returncode}: {err.decode(errors='replace').strip()}")

def sftp(side, user, batch_text, name):
    batch = f"{work}/batch/{name}"
    with open(batch, "w") as f:
        f.write(batch_text)
    if side == "ours":
        target = ["-P", ours_port, *opts, "-i", KEY[user], "-b", batch, f"{user}@{ours_ip}"]
    else:
        target = ["-P", sshd_port, *opts, "-i", KEY[user], "-b", batch, f"{sshd_user}@{sshd_ip}"]
    return ["sftp", *target]

def ssh(side, user, *command):
    if side == "ours":
        return ["ssh", "-p", ours_port, *opts, "-i", KEY[user], f"{user}@{ours_ip}", *command]
    return ["ssh", "-p", sshd_port, *opts, "-i", KEY[user], f"{sshd_user}@{sshd_ip}", *command]

def same_as_src(path, what):
    if subprocess.run(["cmp", "-s", src, path], timeout=TIMEOUT).returncode != 0:
        sys.exit(f"{what}: {path} differs from the source file (size {os.path.getsize(path)})")

def library_ids():
    p = subprocess.run(ssh("ours", "alice", "library", "--json"), stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=60, check=True)
    import json
    return {f["name"]: (f["id"], f["size"]) for f in map(json.loads, p.stdout.decode().splitlines())}

# --- one transfer of each kind; returns (wall secs, server peak RSS KiB, server CPU s, client CPU s,
# server RSS KiB when it started)
def transfer(kind, side, n):
    out = f"{work}/out/{kind}-{side}-{n}.bin"
    stdout = subprocess.DEVNULL
    if kind == "put":
        if side == "ours":
            cmd = sftp(side, "alice", f'put "{src}" "library/put-{n}.bin"\n', "put")
        elif side == "sshd":
            cmd = sftp(side, "alice", f'put "{src}" "{work}/sshd/up/put-{n}.bin"\n', "put")
        else:  # sshd, and the client asks for fsync@openssh.com after the upload, as ours always syncs
            cmd = sftp("sshd", "alice", f'put -f "{src}" "{work}/sshd/up/put-{n}.bin"\n', "put")
    elif kind == "sftp-get":
        path = "library/ref.bin" if side == "ours" else src
        cmd = sftp(side, "alice", f'get "{path}" "{out}"\n', "get")
    else:  # exec
        cmd = ssh(side, "bob", "get", ref_id) if side == "ours" else ssh(side, "bob", "cat", src)
        stdout = open(out, "wb")
    server = "ours" if side == "ours" else "sshd"
    cpu_pid, with_children = (ours_pid, False) if server == "ours" else (sshd_pid, True)
    cpu0 = cpu_secs(cpu_pid, with_children)
    client0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with Sampler(server) as s:
        t = time.perf_counter()
        try:
            run_client(cmd, stdout=stdout, what=f"{kind} {side} #{n}")
        finally:
            if stdout is not subprocess.DEVNULL:
                stdout.close()
        wall = time.perf_counter() - t
    if server == "sshd":
        time.sleep(0.1)  # let the listener reap the connection's processes: their CPU time moves to it
    cpu = cpu_secs(cpu_pid, with_children) - cpu0
    client1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (client1.ru_utime + client1.ru_stime) - (client0.ru_utime + client0.ru_stime)
    # Check the bytes, then clean up (not timed).
    if kind == "put":
        if side == "ours":
            got = library_ids().get(f"put-{n}.bin")
            if got != (ref_id, size):
                sys.exit(f"put ours #{n}: library lists {got}, expected ({ref_id}, {size})")
            run_client(sftp("ours", "alice", f'rm "library/put-{n}.bin"\n', "rm"), what="rm")
        else:
            up = f"{work}/sshd/up/put-{n}.bin"
            same_as_src(up, f"put {side} #{n}")
            os.remove(up)
    else:
        same_as_src(out, f"{kind} {side} #{n}")
        os.remove(out)
    os.sync()  # no dirty pages from one run left to be written back during the next
    return wall, s.peak, cpu, client, s.start

KINDS = {
    "put": ["ours", "sshd", "sshd-fsync"],
    "sftp-get": ["ours", "sshd"],
    "exec": ["ours", "sshd"],
}
results = {(k, s): [] for k, sides in KINDS.items() for s in sides}
n = 0
for i in range(-warmup, runs):
    for kind, sides in KINDS.items():
        order = sides if i % 2 == 0 else sides[::-1]  # alternate who goes first
        for side in order:
            n += 1
            r = transfer(kind, side, n)
            if i >= 0:
                results[(kind, side)].append(r)
            log(f"{'warm-up' if i < 0 else f'run {i + 1}/{runs}'} {kind:8} {side:10} "
                f"{r[0]:6.2f} s {size_mib / r[0]:7.1f} MiB/s  server RSS peak {r[1] / 1024:6.1f} MiB"
                f"  server CPU {r[2]:5.2f} s  client CPU {r[3]:5.2f} s")

# Connection cost alone (login + subsystem or command, no data): subtracted for "net" figures.
base_cmds = {
    ("sftp", "ours"): sftp("ours", "alice", "pwd\n", "pwd"),
    ("sftp", "sshd"): sftp("sshd", "alice", "pwd\n", "pwd"),
    ("exec", "ours"): ssh("ours", "bob", "who"),
    ("exec", "sshd"): ssh("sshd", "bob", "true"),
}
base = {k: [] for k in base_cmds}
for i in range(baseline_runs):
    for key in (list(base_cmds) if i % 2 == 0 else list(base_cmds)[::-1]):
        t = time.perf_counter()
        run_client(base_cmds[key], what=f"baseline {key}")
        base[key].append(time.perf_counter() - t)
base = {k: statistics.median(v) if v else 0.0 for k, v in base.items()}

# --- report rows ---------------------------------------------------------------------------
def med(kind, side, col=0):
    return statistics.median(r[col] for r in results[(kind, side)])
def peak(kind, side):
    return max(r[1] for r in results[(kind, side)]) / 1024
def verdict(ok):
    return "met" if ok else "**NOT met**"

rows = []
labels = {"put": "`sftp put`", "sftp-get": "`sftp get`", "exec": "`ssh get ID` / `ssh cat FILE`"}
for kind in KINDS:
    conn = "exec" if kind == "exec" else "sftp"
    for side in KINDS[kind]:
        walls = [r[0] for r in results[(kind, side)]]
        w = statistics.median(walls)
        b = base[(conn, "ours" if side == "ours" else "sshd")]
        name = {"ours": "RoseWire", "sshd": "sshd", "sshd-fsync": "sshd, `put -f` (fsync)"}[side]
        if kind == "exec" and side == "sshd":
            name = "sshd (`cat`)"
        net = f"{size_mib / (w - b):.0f} MiB/s" if w - b > 0.2 * w else "n/a (file too small)"
        rows.append(f"| {labels[kind]}, {name}: median wall time (min–max) | {w:.2f} s ({min(walls):.2f}–{max(walls):.2f}) "
                    f"= {size_mib / w:.0f} MiB/s; net of connecting ({b * 1e3:.0f} ms): {net} | |")
        rows.append(f"| {labels[kind]}, {name}: server CPU, client CPU (median) | {med(kind, side, 2):.2f} s, {med(kind, side, 3):.2f} s | |")
    for other in [s for s in KINDS[kind] if s != "ours"]:
        wo, wt = med(kind, "ours"), med(kind, other)
        bo = base[(conn, "ours")]; bt = base[(conn, "sshd")]
        gross = wt / wo
        net = f"{(wt - bt) / (wo - bo):.2f}" if wo - bo > 0.2 * wo and wt - bt > 0.2 * wt else "n/a"
        pairs = statistics.median(t[0] / o[0] for o, t in zip(results[(kind, "ours")], results[(kind, other)]))
        vs = {"sshd": "sshd", "sshd-fsync": "sshd with fsync"}[other]
        if other == "sshd":
            rows.append(f"| **{labels[kind]} throughput ratio ours/{vs}** (median over median; median of pairs; net of connecting) "
                        f"| **{gross:.2f}**; {pairs:.2f}; {net} | ≥ 1.0: {verdict(gross >= 1.0)} |")
        else:
            rows.append(f"| {labels[kind]} throughput ratio ours/{vs} (median over median; median of pairs; net of connecting) "
                        f"| {gross:.2f}; {pairs:.2f}; {net} | for context |")

all_peak = max(peak(k, "ours") for k in KINDS)
with open(f"/proc/{ours_pid}/status") as f:
    hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
rows.append(f"| RoseWire RSS idle (before any transfer) | {idle_rss:.1f} MiB | |")
for kind in KINDS:
    rise = max(r[1] - r[4] for r in results[(kind, "ours")]) / 1024
    rows.append(f"| RoseWire peak RSS during {labels[kind]} (50 ms samples); largest rise within one such transfer "
                f"| {peak(kind, 'ours'):.1f} MiB (+{peak(kind, 'ours') - idle_rss:.1f} above idle); +{rise:.1f} MiB | |")
rows.append(f"| **RoseWire peak RSS above idle, all transfers** | **+{all_peak - idle_rss:.1f} MiB** "
            f"(peak {all_peak:.1f}; VmHWM {hwm:.1f}) | < 64 MiB: {verdict(all_peak - idle_rss < 64)} |")
rows.append(f"| RoseWire RSS after all transfers | {rss_kib(ours_pid) / 1024:.1f} MiB | |")
for kind in KINDS:
    rows.append(f"| sshd (all its processes) peak RSS during {labels[kind]} | {peak(kind, 'sshd'):.1f} MiB "
                f"(idle listener {tree_rss_kib(sshd_pid) / 1024:.1f}) | for context |")
print("\n".join(rows))
PY
) || die "measurement failed"

SERVER_ERRORS=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/rosewire/server.log" | grep -cE '^\S+ +(ERROR|WARN) ' || true)
kill -0 "$ROSEWIRE_PID" 2>/dev/null && SERVER_ALIVE=yes || SERVER_ALIVE=NO

# --- 4. report ------------------------------------------------------------------------------
mkdir -p "$RESULTS_DIR"
{
    echo "# RoseWire library benchmark"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM,"
    echo "rosewire $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD -- src shell Cargo.toml 2>/dev/null || echo "+dirty (diff $(git diff HEAD -- src shell Cargo.toml | sha256sum | cut -c1-12))")${ROSEWIRE_BIN:+ (but measured: ROSEWIRE_BIN=$ROSEWIRE_BIN)},"
    echo "openssh-server $(dpkg-query -W -f '${Version}' openssh-server 2>/dev/null || echo '?'), client $(ssh -V 2>&1)."
    echo "One $SIZE_MIB MiB random file; $RUNS alternating runs of each transfer after $WARMUP warm-up;"
    echo "cipher: ours $OURS_CIPHER, sshd $SSHD_CIPHER${CIPHER:+ (cipher forced)}; every download compared with \`cmp\`, every upload checked."
    echo
    echo "| figure | value | goal |"
    echo "|---|---|---|"
    echo "$MD_BODY"
    echo "| server WARN/ERROR log lines; still running at the end | $SERVER_ERRORS; $SERVER_ALIVE | 0; yes |"
} >"$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS"
echo
cat "$RESULTS"
echo
log "written to ${RESULTS#"$ROOT"/}"
