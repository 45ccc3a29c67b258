#!/usr/bin/env python3
"""Hostile clients for benches/hostile.sh: one function per attack (issue 6, findings 1, 2, 3,
4 and 11), each against a running `rosewire serve` that the shell script started.

    hostile.py PART --ip IP --port PORT --pid PID --data DIR --keys DIR --domain NAME

PART is flood, listing, amplify, typing or browse. Figures go to stdout, one line each;
progress goes to stderr. Knobs come from the environment (see hostile.sh). Every wait is
bounded, every client has a timeout, and the attacks only report what happened: a server that
refuses an attack shows up as "refused: N of M", not as a failure of the benchmark.
"""

import argparse
import glob
import logging
import os
import queue
import select
import socket
import statistics
import subprocess
import sys
import threading
import time

import paramiko
from paramiko.sftp import CMD_OPENDIR

# Paramiko logs every connection the server drops as an error: expected here.
logging.getLogger("paramiko").setLevel(logging.CRITICAL + 1)
# Hundreds of client threads (one per paramiko transport): small stacks.
threading.stack_size(512 * 1024)

TICK = os.sysconf("SC_CLK_TCK")
MIB = 1 << 20
# Source addresses: the legitimate clients, and the attacker's nine.
CLIENT_IP = "127.0.0.9"
FLOOD_IPS = [f"127.0.0.{i}" for i in range(11, 20)]
# Stop an attack that eats the machine: below this much available memory, clients let go.
MIN_AVAILABLE_KIB = int(os.environ.get("MIN_AVAILABLE_MIB", "2048")) * 1024


def env_int(name, default):
    return int(os.environ.get(name, str(default)))


def log(msg):
    print(f"[hostile {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def figure(msg):
    print(msg, flush=True)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def ms(secs):
    """Milliseconds, or "n/a" for the median of nothing."""
    return "n/a" if secs != secs else f"{secs * 1000:.0f}"


# --- the server process ---------------------------------------------------------------------
def status_kib(pid, key):
    """A `/proc/PID/status` field in KiB (VmRSS, VmHWM); 0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_secs(pid):
    """utime + stime of the process, all threads, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / TICK


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def mem_available_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """Samples the server's VmRSS every 50 ms; sets `low_memory` when the machine runs short."""

    def __init__(self, pid, limit_secs=1800):
        self.pid, self.limit = pid, limit_secs
        self.peak = self.start = status_kib(pid, "VmRSS")
        self.stop_event, self.low_memory = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        deadline = time.monotonic() + self.limit
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            self.peak = max(self.peak, status_kib(self.pid, "VmRSS"))
            if mem_available_kib() < MIN_AVAILABLE_KIB and not self.low_memory.is_set():
                log(f"machine memory below {MIN_AVAILABLE_KIB // 1024} MiB available: stopping the attack")
                self.low_memory.set()
            self.stop_event.wait(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join()
        self.peak = max(self.peak, status_kib(self.pid, "VmRSS"))


# --- clients --------------------------------------------------------------------------------
class Target:
    def __init__(self, a):
        self.ip, self.port, self.pid = a.ip, a.port, a.pid
        self.data, self.keys, self.domain = a.data, a.keys, a.domain
        self._keys = {}

    def key_file(self, user):
        return os.path.join(self.keys, user)

    def key(self, user):
        if user not in self._keys:
            self._keys[user] = paramiko.Ed25519Key.from_private_key_file(self.key_file(user))
        return self._keys[user]

    def user_dir(self, sub):
        """DATA/users/<id>/SUB of the only user that has SUB (found on disk, not in the db)."""
        found = glob.glob(os.path.join(self.data, "users", "*", sub))
        if len(found) != 1:
            sys.exit(f"expected one users/*/{sub} in {self.data}, found {found}")
        return found[0]


def ssh(t, user, *command, timeout=60, connect_timeout=10, stdout=subprocess.PIPE):
    """One OpenSSH client process from CLIENT_IP: (ok, seconds, stdout bytes, stderr text)."""
    argv = ["ssh", "-p", str(t.port), "-o", f"BindAddress={CLIENT_IP}", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
            "-o", f"ConnectTimeout={connect_timeout}", "-o", "ControlMaster=no",
            "-o", "ControlPath=none", "-i", t.key_file(user), f"{user}@{t.ip}", *command]
    start = time.perf_counter()
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, time.perf_counter() - start, b"", f"killed after {timeout} s"
    secs = time.perf_counter() - start
    err = p.stderr.decode(errors="replace").strip()
    return p.returncode == 0, secs, p.stdout or b"", err or f"exit {p.returncode}"


def tcp(t, src, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.bind((src, 0))
        s.settimeout(timeout)
        s.connect((t.ip, t.port))
    except OSError:
        s.close()
        raise
    return s


def handshake(t, src, timeout=20):
    """A paramiko transport past key exchange, not authenticated."""
    tr = paramiko.Transport(tcp(t, src, timeout))
    tr.banner_timeout = tr.handshake_timeout = tr.auth_timeout = timeout
    try:
        tr.start_client(timeout=timeout)
        # start_client returns quietly when its timeout passes: was the key exchange done?
        if tr.session_id is None or not tr.is_active():
            raise paramiko.SSHException(f"no key exchange within {timeout} s")
    except Exception:
        tr.close()
        raise
    return tr


def login(t, user, src=CLIENT_IP, timeout=30):
    tr = handshake(t, src, timeout)
    try:
        tr.auth_publickey(user, t.key(user))
    except Exception:
        tr.close()
        raise
    return tr


def sftp_session(t, user):
    tr = login(t, user)
    try:
        return tr, paramiko.SFTPClient.from_transport(tr)
    except Exception:
        tr.close()
        raise


def first_line(e):
    text = str(e) or type(e).__name__
    return text.splitlines()[0][:160] if text else type(e).__name__


def tally(stats, lock, attempt):
    """Runs one attempt, counting it in stats["ok"] or, with its error, stats["refused"].
    Returns what the attempt returned, or None when it was refused."""
    try:
        result = attempt()
    except Exception as e:
        with lock:
            stats["refused"] += 1
            stats["errors"].add(first_line(e))
        return None
    with lock:
        stats["ok"] += 1
    return result


# --- 1. pre-authentication flood ------------------------------------------------------------
class Flood:
    """Holds `total` connections that never log in: even slots send nothing at all, odd slots
    finish key exchange (paramiko) and stop there. A slot the server closes is opened again,
    as an attacker would, within the per-address rate the server allows by default."""

    def __init__(self, t, total, per_minute, openers=16):
        self.t, self.total, self.per_minute = t, total, per_minute
        self.slots = [{"kind": "silent" if i % 2 == 0 else "kex", "src": FLOOD_IPS[i % len(FLOOD_IPS)],
                       "conn": None, "banner": False} for i in range(total)]
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.todo = queue.Queue()
        for i in range(total):
            self.todo.put(i)
        # Client-side token bucket per source address, the size and rate of the server's default.
        self.buckets = {ip: [float(per_minute), time.monotonic()] for ip in FLOOD_IPS}
        self.counts = {"attempts": 0, "failed": 0, "closed": 0}
        self.threads = [threading.Thread(target=self.opener, daemon=True) for _ in range(openers)]
        self.threads.append(threading.Thread(target=self.watcher, daemon=True))

    def start(self):
        for th in self.threads:
            th.start()

    def take_token(self, ip):
        while not self.stop.is_set():
            with self.lock:
                tokens, last = self.buckets[ip]
                now = time.monotonic()
                tokens = min(float(self.per_minute), tokens + (now - last) * self.per_minute / 60)
                if tokens >= 1:
                    self.buckets[ip] = [tokens - 1, now]
                    return True
                self.buckets[ip] = [tokens, now]
                wait = (1 - tokens) * 60 / self.per_minute
            self.stop.wait(min(wait, 0.5))
        return False

    def opener(self):
        while not self.stop.is_set():
            try:
                i = self.todo.get(timeout=0.2)
            except queue.Empty:
                continue
            slot = self.slots[i]
            if not self.take_token(slot["src"]):
                return
            with self.lock:
                self.counts["attempts"] += 1
            try:
                if slot["kind"] == "silent":
                    conn = tcp(self.t, slot["src"], 10)
                    conn.setblocking(False)
                else:
                    conn = handshake(self.t, slot["src"], 20)
            except Exception:
                with self.lock:
                    self.counts["failed"] += 1
                self.stop.wait(1)
                self.todo.put(i)
                continue
            with self.lock:
                slot["conn"], slot["banner"] = conn, False
            if self.stop.is_set():
                conn.close()

    def watcher(self):
        """Every half second: which connections has the server closed? (and drain banners)"""
        while not self.stop.wait(0.5):
            with self.lock:
                held = [(i, s) for i, s in enumerate(self.slots) if s["conn"] is not None]
            poller = select.poll()
            fds = {}
            for i, s in held:
                if s["kind"] == "silent":
                    fds[s["conn"].fileno()] = (i, s)
                    poller.register(s["conn"], select.POLLIN | select.POLLERR | select.POLLHUP)
            gone = []
            for fd, _ in poller.poll(0):
                i, s = fds[fd]
                try:
                    data = s["conn"].recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    s["banner"] = True
                else:
                    gone.append(i)
            gone += [i for i, s in held if s["kind"] == "kex" and not s["conn"].is_active()]
            for i in gone:
                with self.lock:
                    conn, self.slots[i]["conn"] = self.slots[i]["conn"], None
                    self.counts["closed"] += 1
                conn.close()
                self.todo.put(i)

    def held(self):
        with self.lock:
            silent = [s for s in self.slots if s["kind"] == "silent" and s["conn"] is not None]
            kex = sum(1 for s in self.slots if s["kind"] == "kex" and s["conn"] is not None)
            return len(silent), sum(1 for s in silent if s["banner"]), kex, dict(self.counts)

    def close(self):
        self.stop.set()
        for th in self.threads:
            th.join(timeout=30)
        with self.lock:
            conns = [s["conn"] for s in self.slots if s["conn"] is not None]
            for s in self.slots:
                s["conn"] = None
        for c in conns:
            c.close()


def legit_logins(t, n, spacing):
    """n `ssh alice who` started `spacing` seconds apart: [(ok, seconds, error)]."""
    results = [None] * n

    def one(i):
        ok, secs, _, err = ssh(t, "alice", "who", timeout=30, connect_timeout=10)
        results[i] = (ok, secs, err)

    threads = []
    for i in range(n):
        th = threading.Thread(target=one, args=(i,), daemon=True)
        th.start()
        threads.append(th)
        time.sleep(spacing)
    for th in threads:
        th.join(timeout=40)
    return [r or (False, float("nan"), "no result") for r in results]


def part_flood(t):
    total = env_int("FLOOD", 1080)
    per_minute = env_int("FLOOD_PER_MINUTE", 120)
    fill_secs = env_int("FLOOD_FILL_SECS", 90)
    legit_n = env_int("LEGIT_LOGINS", 20)
    base = [ssh(t, "alice", "who") for _ in range(5)]
    if not all(ok for ok, *_ in base):
        sys.exit(f"ssh alice who fails before the flood: {[e for ok, _, _, e in base if not ok]}")
    base_ms = median([s for _, s, _, _ in base]) * 1000
    log(f"no flood: ssh alice who median {base_ms:.0f} ms; flooding with {total} connections "
        f"from {FLOOD_IPS[0]}-{FLOOD_IPS[-1].rsplit('.', 1)[1]}")
    flood = Flood(t, total, per_minute)
    t0 = time.monotonic()
    flood.start()
    try:
        deadline = t0 + fill_secs
        next_log = t0 + 10
        # Stop waiting once all are held, or when the count has not moved for 20 s.
        last, moved = -1, time.monotonic()
        while time.monotonic() < deadline:
            silent, banner, kex, counts = flood.held()
            if silent + kex >= total:
                break
            if silent + kex != last:
                last, moved = silent + kex, time.monotonic()
            elif time.monotonic() - moved > 20:
                break
            if time.monotonic() >= next_log:
                log(f"flood: {silent} silent + {kex} past kex held, {counts}")
                next_log += 10
            time.sleep(0.5)
        fill = time.monotonic() - t0
        time.sleep(5)
        silent, banner, kex, counts = flood.held()
        log(f"flood after {fill:.0f} s + 5 s: {silent} silent ({banner} got the server's banner) + "
            f"{kex} past kex held; {counts}; server RSS {status_kib(t.pid, 'VmRSS') / 1024:.0f} MiB")
        log(f"{legit_n} legit logins from {CLIENT_IP}, 0.5 s apart, ConnectTimeout=10, each killed after 30 s")
        results = legit_logins(t, legit_n, 0.5)
        silent2, banner2, kex2, counts2 = flood.held()
    finally:
        flood.close()
    good = [s for ok, s, _ in results if ok]
    errors = sorted({e.splitlines()[-1][:100] for ok, _, e in results if not ok})
    figure(f"pre-auth flood: {total} connections attempted from 9 addresses ({total // 2} silent, "
           f"{total - total // 2} stopping after key exchange); held when the legit logins started: "
           f"{silent} silent ({banner} of them answered with the server's banner) + {kex} past key exchange; "
           f"the server closed {counts2['closed']} of them by the end, {counts2['failed']} opens failed, "
           f"{counts2['attempts']} opens in all")
    figure(f"legit logins under pre-auth flood: {len(good)}/{legit_n} succeeded, median latency "
           f"{ms(median(good))} ms (no flood: {base_ms:.0f} ms)"
           + (f"; failures: {'; '.join(errors)}" if errors else ""))
    figure(f"pre-auth flood: held at the end: {silent2} silent + {kex2} past key exchange; "
           f"server RSS {status_kib(t.pid, 'VmRSS') / 1024:.0f} MiB, VmHWM {status_kib(t.pid, 'VmHWM') / 1024:.0f} MiB")


# --- 2. listing attack ----------------------------------------------------------------------
def part_listing(t):
    folders = env_int("FOLDERS", 50000)
    name_len = env_int("NAME_LEN", 200)
    sessions, opens = env_int("LISTING_SESSIONS", 3), env_int("OPENS", 64)
    tr, sftp = sftp_session(t, "alice")
    try:
        sftp.mkdir("/library/big")
    except IOError as e:
        log(f"mkdir /library/big: {first_line(e)}")
    sftp.close()
    tr.close()
    big = t.user_dir("library/big")
    start = time.monotonic()
    for i in range(folders):
        name = f"{i:06d}-".ljust(name_len, "d")
        try:
            os.mkdir(os.path.join(big, name))
        except FileExistsError:
            pass
    log(f"{folders} folders of {name_len}-character names made on disk in {time.monotonic() - start:.1f} s")
    time.sleep(1)
    idle = status_kib(t.pid, "VmRSS")
    stats = {"ok": 0, "refused": 0, "errors": set()}
    lock = threading.Lock()
    ready = threading.Barrier(sessions + 1)
    release = threading.Event()
    conns = []

    def session(n):
        try:
            tr, sftp = sftp_session(t, "alice")
        except Exception as e:
            with lock:
                stats["refused"] += opens
                stats["errors"].add(f"session: {first_line(e)}")
            tr = None
        if tr is not None:
            conns.append(tr)
            for _ in range(opens):
                if sampler.low_memory.is_set():
                    with lock:
                        stats["errors"].add("stopped early: the machine ran short of memory")
                    break
                opened = tally(stats, lock, lambda: sftp._request(CMD_OPENDIR, "/library/big") or True)
                if opened is None and not tr.is_active():
                    break
        try:
            ready.wait(timeout=900)
        except threading.BrokenBarrierError:
            pass
        release.wait(timeout=900)

    log(f"{sessions} SFTP sessions, each opening /library/big {opens} times without reading it")
    start = time.monotonic()
    with RssSampler(t.pid) as sampler:
        threads = [threading.Thread(target=session, args=(n,), daemon=True) for n in range(sessions)]
        for th in threads:
            th.start()
        try:
            ready.wait(timeout=900)
        except threading.BrokenBarrierError:
            log("sessions did not all finish within 900 s")
        took = time.monotonic() - start
        time.sleep(2)  # held open
        held = status_kib(t.pid, "VmRSS")
    hwm = status_kib(t.pid, "VmHWM")
    release.set()
    for tr in conns:
        tr.close()
    for th in threads:
        th.join(timeout=30)
    after = settle_rss(t.pid)
    total = sessions * opens
    figure(f"listing attack ({folders} folders, {name_len}-char names; {sessions} sessions x {opens} "
           f"OPENDIR without reading, done in {took:.1f} s): RSS idle {idle / 1024:.0f} MiB, peak "
           f"{sampler.peak / 1024:.0f} MiB (VmHWM {hwm / 1024:.0f} MiB; {held / 1024:.0f} MiB while held), "
           f"after the sessions closed {after / 1024:.0f} MiB; refused: {stats['refused']} of {total} opens"
           + (f" ({'; '.join(sorted(stats['errors']))})" if stats["errors"] else ""))


def settle_rss(pid, secs=10):
    """VmRSS once it stops falling (sampled every half second, at most `secs`)."""
    last = status_kib(pid, "VmRSS")
    deadline = time.monotonic() + secs
    time.sleep(1)
    while time.monotonic() < deadline:
        now = status_kib(pid, "VmRSS")
        if abs(now - last) < 1024:
            return now
        last = now
        time.sleep(0.5)
    return status_kib(pid, "VmRSS")


# --- 3. disk amplification ------------------------------------------------------------------
def disk_bytes(folder):
    """(apparent bytes, real bytes, files) of the files directly in `folder`."""
    apparent = real = n = 0
    try:
        with os.scandir(folder) as it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                apparent += st.st_size
                real += st.st_blocks * 512
                n += 1
    except OSError:
        pass
    return apparent, real, n


def du(folder, *flags):
    p = subprocess.run(["du", "-s", *flags, folder], capture_output=True, text=True, timeout=120)
    return int(p.stdout.split()[0]) if p.returncode == 0 and p.stdout else -1


def part_amplify(t):
    size = env_int("SPARSE_MIB", 20) * MIB
    sessions, opens = env_int("AMPLIFY_SESSIONS", 2), env_int("OPENS", 64)
    tr, sftp = sftp_session(t, "alice")
    try:
        with sftp.open("/library/sparse.bin", "w") as f:  # one byte at the end: a 20 MiB hole
            f.seek(size - 1)
            f.write(b"\0")
    finally:
        sftp.close()
        tr.close()
    lib = t.user_dir("library")
    st = os.stat(os.path.join(lib, "sparse.bin"))
    partial = t.user_dir(".partial")
    log(f"library/sparse.bin: {st.st_size} bytes apparent, {st.st_blocks * 512} on disk; "
        f"{sessions} sessions open it read-write (no truncate) {opens} times each and hold it")
    stats = {"ok": 0, "refused": 0, "errors": set()}
    lock = threading.Lock()
    ready = threading.Barrier(sessions + 1)
    release = threading.Event()
    conns, files = [], []
    peak = [0, 0]
    stop = threading.Event()

    def watch():
        while not stop.wait(0.25):
            a, r, _ = disk_bytes(partial)
            peak[0], peak[1] = max(peak[0], a), max(peak[1], r)

    def session(n):
        try:
            tr, sftp = sftp_session(t, "alice")
        except Exception as e:
            with lock:
                stats["refused"] += opens
                stats["errors"].add(f"session: {first_line(e)}")
            tr = None
        if tr is not None:
            conns.append(tr)
            for _ in range(opens):
                opened = tally(stats, lock, lambda: sftp.open("/library/sparse.bin", "r+"))
                if opened is not None:
                    files.append(opened)
                elif not tr.is_active():
                    break
        try:
            ready.wait(timeout=900)
        except threading.BrokenBarrierError:
            pass
        release.wait(timeout=900)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.monotonic()
    threads = [threading.Thread(target=session, args=(n,), daemon=True) for n in range(sessions)]
    for th in threads:
        th.start()
    try:
        ready.wait(timeout=900)
    except threading.BrokenBarrierError:
        log("sessions did not all finish within 900 s")
    took = time.monotonic() - start
    time.sleep(1)
    apparent, real = du(partial, "-b"), du(partial, "--block-size=1")
    held_files = disk_bytes(partial)[2]
    stop.set()
    watcher.join()
    # Drop the connections without closing the handles: nothing is saved into library/.
    release.set()
    for tr in conns:
        tr.close()
    for th in threads:
        th.join(timeout=30)
    deadline = time.monotonic() + 30
    while disk_bytes(partial)[2] and time.monotonic() < deadline:
        time.sleep(0.5)
    left = disk_bytes(partial)
    files.clear()
    total = sessions * opens
    quota = env_int("QUOTA_MIB", 50)
    figure(f"amplification ({size // MIB} MiB sparse file, {st.st_blocks * 512} bytes on disk, quota "
           f"{quota} MiB; {sessions} sessions x {opens} read-write opens held, done in {took:.1f} s): "
           f".partial/ at the peak {real} bytes real ({real / MIB:.0f} MiB, du -s --block-size=1), "
           f"{apparent} apparent (du -sb), {held_files} files; sampled peak real {peak[1] / MIB:.0f} MiB; "
           f"after the sessions dropped: {left[2]} files, {left[1]} bytes real; "
           f"refused: {stats['refused']} of {total} opens"
           + (f" ({'; '.join(sorted(stats['errors']))})" if stats["errors"] else ""))


# --- 4. typing cost -------------------------------------------------------------------------
class Typist:
    """An interactive shell (pty) through paramiko, typing one key per SSH packet; a thread
    reads and drops what the server draws."""

    def __init__(self, t, user):
        self.tr = login(t, user)
        self.ch = self.tr.open_session(timeout=30)
        self.ch.get_pty(term="xterm-256color", width=80, height=24)
        self.ch.invoke_shell()
        self.received = 0
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()
        deadline = time.monotonic() + 15
        while self.received == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)

    def read(self):
        self.ch.settimeout(1)
        while True:
            try:
                data = self.ch.recv(65536)
            except socket.timeout:
                if self.ch.closed or not self.tr.is_active():
                    return
                continue
            except Exception:
                return
            if not data:
                return
            self.received += len(data)

    def type(self, keys, stop=None, limit_secs=300):
        """Sends each item of `keys` as its own packet; returns how many were sent."""
        deadline = time.monotonic() + limit_secs
        n = 0
        for k in keys:
            if (stop is not None and stop.is_set()) or time.monotonic() > deadline:
                break
            while True:
                try:
                    self.ch.sendall(k)
                    break
                except socket.timeout:  # the server's window is full: it is behind; wait on
                    if (stop is not None and stop.is_set()) or time.monotonic() > deadline:
                        return n
            n += 1
        return n

    def close(self):
        self.tr.close()
        self.reader.join(timeout=5)


def keystrokes(mode, n, per_write):
    """`n` keys in writes of `per_write` keys (one SSH packet each). "long": `a` onto one line;
    "short": 63 x `a` then Ctrl-U (clear the line), a 64-key cycle."""
    cycle = b"a" * 64 if mode == "long" else b"a" * 63 + b"\x15"
    stream = cycle * (per_write // 64 + 2)
    sent = 0
    while sent < n:
        k = min(per_write, n - sent)
        off = sent % 64
        yield stream[off:off + k]
        sent += k


def wait_cpu_quiet(pid, limit_secs=300):
    """Waits until the server used under 20 ms of CPU in a second (bounded); returns the wait."""
    start = time.monotonic()
    last = cpu_secs(pid)
    while time.monotonic() - start < limit_secs:
        time.sleep(1)
        now = cpu_secs(pid)
        if now - last < 0.02:
            break
        last = now
    return time.monotonic() - start


def part_typing(t):
    keys = env_int("TYPED_KIB", 256) * 1024
    batch = env_int("KEYS_PER_WRITE", 64)
    cpu = {}
    for per_write in (1, batch):
        for mode, user in (("long", "bob"), ("short", "carol")):
            ty = Typist(t, user)
            wait_cpu_quiet(t.pid, 10)
            c0, start = cpu_secs(t.pid), time.monotonic()
            writes = ty.type(keystrokes(mode, keys, per_write))
            sending = time.monotonic() - start
            wait_cpu_quiet(t.pid)
            cpu[(per_write, mode)] = cpu_secs(t.pid) - c0
            ty.close()
            log(f"{mode} line(s), {per_write} key(s) per write: {writes} writes in {sending:.1f} s; "
                f"server CPU {cpu[(per_write, mode)]:.2f} s; {ty.received} bytes drawn back")
    for per_write in (1, batch):
        figure(f"server CPU per {keys // 1024} KiB typed, {per_write} key{'s' if per_write > 1 else ''} per "
               f"SSH packet: long line {cpu[(per_write, 'long')]:.2f} s, short lines {cpu[(per_write, 'short')]:.2f} s")

    base = [ssh(t, "alice", "who") for _ in range(5)]
    base_ms = median([s for ok, s, _, _ in base if ok]) * 1000
    for per_write in (batch, env_int("BURST_KEYS", 4096)):
        who_while_typing(t, keys, per_write, base_ms)


def who_while_typing(t, keys, per_write, base_ms):
    """5 `ssh alice who` while bob and carol type onto long lines, `per_write` keys a packet."""
    stop = threading.Event()
    typists = [Typist(t, u) for u in ("bob", "carol")]
    sent = [0, 0]

    def keep_typing(i):
        n = typists[i].type(keystrokes("long", 64 * keys, per_write), stop=stop, limit_secs=400)
        sent[i] = n * per_write

    threads = [threading.Thread(target=keep_typing, args=(i,), daemon=True) for i in range(2)]
    for th in threads:
        th.start()
    time.sleep(2)
    timed = []
    for _ in range(5):
        timed.append(ssh(t, "alice", "who", timeout=60))
    stop.set()
    for th in threads:
        th.join(timeout=60)
    for ty in typists:
        ty.close()
    wait_cpu_quiet(t.pid, 120)
    good = [s for ok, s, _, _ in timed if ok]
    figure(f"ssh alice who while two sessions type onto long lines ({per_write} keys per packet): median "
           f"{ms(median(good))} ms (each: {', '.join(ms(s) if ok else 'failed' for ok, s, _, _ in timed)} ms; "
           f"{len(good)}/5 succeeded; no typing: {base_ms:.0f} ms; keys sent meanwhile: {sent[0]} + {sent[1]})")


# --- 11. browse flood -----------------------------------------------------------------------
def part_browse(t):
    n = env_int("FILES", 40000)
    name_len = env_int("NAME_LEN", 200)
    workers = env_int("UPLOAD_SESSIONS", 8)
    callers = env_int("BROWSERS", 30)
    make_secs = env_int("MAKE_SECS", 1200)
    made, refused, errors = [0], [0], set()
    lock = threading.Lock()
    deadline = time.monotonic() + make_secs

    def uploader(w):
        try:
            tr, sftp = sftp_session(t, "alice")
        except Exception as e:
            with lock:
                errors.add(f"session: {first_line(e)}")
            return
        try:
            for i in range(w, n, workers):
                if time.monotonic() > deadline or not tr.is_active():
                    break
                try:
                    sftp.open(f"/library/{i:05d}-".ljust(name_len + len('/library/'), "f"), "w").close()
                    with lock:
                        made[0] += 1
                except Exception as e:
                    with lock:
                        refused[0] += 1
                        errors.add(first_line(e))
        finally:
            tr.close()

    log(f"uploading {n} empty files with {name_len}-character names, {workers} SFTP sessions")
    start = time.monotonic()
    threads = [threading.Thread(target=uploader, args=(w,), daemon=True) for w in range(workers)]
    for th in threads:
        th.start()
    next_log = start + 30
    while any(th.is_alive() for th in threads) and time.monotonic() < deadline + 60:
        time.sleep(1)
        if time.monotonic() >= next_log:
            log(f"{made[0]} files uploaded, {refused[0]} refused")
            next_log += 30
    for th in threads:
        th.join(timeout=60)
    upload_secs = time.monotonic() - start
    log(f"{made[0]} files uploaded in {upload_secs:.0f} s, {refused[0]} refused {sorted(errors)[:3]}")
    ok, secs, out, err = ssh(t, "alice", "share", "*", timeout=600)
    log(f"share '*': {'ok' if ok else 'FAILED'} in {secs:.1f} s: {(out.decode(errors='replace').strip() or err)[:200]}")
    whom = f"@alice@{t.domain}"
    ok, secs, out, err = ssh(t, "bob", "browse", whom, "--json", timeout=300)
    one_bytes, one_lines = len(out), out.count(b"\n")
    if not ok:
        log(f"browse failed: {err[:200]}")
    settle_rss(t.pid, 5)
    before = status_kib(t.pid, "VmRSS")
    outs = [os.path.join(t.keys, f"browse-{i}.out") for i in range(callers)]
    answers = [None] * callers

    def caller(i):
        with open(outs[i], "wb") as f:
            answers[i] = ssh(t, "bob", "browse", whom, "--json", timeout=300, stdout=f)[:2]

    start = time.monotonic()
    with RssSampler(t.pid) as sampler:
        threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(callers)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=330)
    took = time.monotonic() - start
    sizes = [os.path.getsize(p) for p in outs if os.path.exists(p)]
    for p in outs:
        if os.path.exists(p):
            os.remove(p)
    good = sum(1 for a in answers if a and a[0])
    after = settle_rss(t.pid)
    figure(f"browse flood ({made[0]} shared empty files, {name_len}-char names, uploaded in {upload_secs:.0f} s"
           + (f", {refused[0]} uploads refused" if refused[0] else "") + f"): one `browse --json` answer "
           f"{one_bytes} bytes ({one_lines} lines, {secs:.2f} s); {callers} concurrent calls: {good}/{callers} "
           f"succeeded in {took:.1f} s, {sum(sizes)} bytes in all; server RSS before {before / 1024:.0f} MiB, "
           f"peak {sampler.peak / 1024:.0f} MiB (added {(sampler.peak - before) / 1024:.0f} MiB), "
           f"after {after / 1024:.0f} MiB")


PARTS = {"flood": part_flood, "listing": part_listing, "amplify": part_amplify,
         "typing": part_typing, "browse": part_browse}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("part", choices=sorted(PARTS))
    ap.add_argument("--ip", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--keys", required=True)
    ap.add_argument("--domain", required=True)
    a = ap.parse_args()
    t = Target(a)
    start = time.monotonic()
    PARTS[a.part](t)
    figure(f"{a.part}: part took {time.monotonic() - start:.0f} s; server "
           + ("still running" if alive(t.pid) else "NOT RUNNING (crashed or killed)"))


if __name__ == "__main__":
    main()
