#!/usr/bin/env python3
"""Clients of benches/federation.sh (see there and benches/README.md).

fanout: chat lines said on instance A, timed until they show in a line-mode shell on C.
Every wait is bounded; every ssh started here is killed on exit.
"""
import argparse
import json
import math
import re
import subprocess
import sys
import threading
import time

SEQ = re.compile(rb"fanout seq=(\d+)")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ssh_cmd(args, node, user, *extra):
    ip, port = node
    return [
        "ssh", "-p", str(port), "-o", f"BindAddress={args.client_ip}", "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
        "-i", f"{args.keys}/{user}", f"{user}@{ip}", *extra,
    ]


def peers_of(args, node):
    try:
        out = subprocess.run(ssh_cmd(args, node, "watcher", "peers", "--json"),
                             stdin=subprocess.DEVNULL, capture_output=True, timeout=30).stdout
    except subprocess.TimeoutExpired:
        return set()
    domains = set()
    for line in out.decode(errors="replace").splitlines():
        try:
            domains.add(json.loads(line)["domain"])
        except (ValueError, KeyError, TypeError):
            pass
    return domains


class Session:
    """`ssh -T user@node`: a line-mode shell; each output line is kept with its arrival time."""

    def __init__(self, args, node, user):
        self.user = user
        self.proc = subprocess.Popen(ssh_cmd(args, node, user, "-T"), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
        self.lines = []  # (monotonic ns, bytes)
        self.seen = {}  # seq -> first monotonic ns
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buf = b""
        while True:
            chunk = self.proc.stdout.read(65536)
            now = time.monotonic_ns()
            if not chunk:
                break
            buf += chunk
            *whole, buf = buf.split(b"\n")
            with self.cond:
                for line in whole:
                    self.lines.append((now, line))
                    m = SEQ.search(line)
                    if m:
                        self.seen.setdefault(int(m.group(1)), now)
                self.cond.notify_all()

    def wait_for(self, needle, timeout):
        end = time.monotonic() + timeout
        with self.cond:
            while not any(needle in l for _, l in self.lines):
                left = end - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return False
                self.cond.wait(left)
        return True

    def send(self, text):
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def close(self):
        try:
            self.proc.kill()
            self.proc.wait(timeout=10)
        except Exception:
            pass


def pct(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def fanout(args):
    nodes = {"A": (args.a_ip, args.a_port), "B": (args.b_ip, args.b_port),
             "C": (args.c_ip, args.c_port)}
    domains = {"A": args.a_domain, "B": args.b_domain, "C": args.c_domain}
    start = time.monotonic()
    for name, node in nodes.items():
        others = {d for n, d in domains.items() if n != name}
        while True:
            known = peers_of(args, node)
            if others <= known:
                break
            if time.monotonic() - start > args.converge_timeout:
                sys.exit(f"{name} knows only {sorted(known)} after {args.converge_timeout} s, "
                         f"not all of {sorted(others)}")
            time.sleep(0.2)
    converged = time.monotonic() - start
    log(f"all three know each other after {converged:.1f} s")

    sessions = []
    try:
        bob = Session(args, nodes["C"], "bob")
        sessions.append(bob)
        if not bob.wait_for(b"Welcome to RoseWire", 30):
            sys.exit("bob's shell on C never opened")
        senders = []
        for i in range(args.senders):
            senders.append(Session(args, nodes["A"], f"s{i:03d}"))
            sessions.append(senders[-1])
            if len(senders) % 8 == 0 or i == args.senders - 1:
                for s in senders[-8:]:
                    if not s.wait_for(b"Welcome to RoseWire", 30):
                        sys.exit(f"{s.user}'s shell on A never opened")
        log(f"{len(senders)} shells open on A, bob's on C")

        # Warm up the path (A's delivery worker for C, C's pinned key of A).
        senders[0].send("fanout warm-up")
        if not bob.wait_for(b"fanout warm-up", 60):
            sys.exit("the warm-up line never reached C")
        time.sleep(1.5)  # the warm-up spent one of s000's chat tokens: let it come back

        n, rate = args.lines, args.rate
        sent = {}
        by_sender = {}
        t0 = time.monotonic()
        for k in range(n):
            due = t0 + k / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            s = senders[k % len(senders)]
            sent[k] = time.monotonic_ns()
            by_sender[k] = s
            s.send(f"fanout seq={k:06d} sent_ns={time.time_ns()}")
        send_time = time.monotonic() - t0
        log(f"{n} lines said on A in {send_time:.2f} s; waiting for C")
        end = time.monotonic() + args.drain_timeout
        with bob.cond:
            while len([k for k in sent if k in bob.seen]) < n and time.monotonic() < end:
                bob.cond.wait(0.2)
        time.sleep(0.5)

        got = [k for k in sent if k in bob.seen]
        from_write = [(bob.seen[k] - sent[k]) / 1e6 for k in got]
        echo = {k: by_sender[k].seen.get(k) for k in sent}
        on_a = [(echo[k] - sent[k]) / 1e6 for k in sent if echo[k] is not None]
        from_echo = [(bob.seen[k] - echo[k]) / 1e6 for k in got if echo[k] is not None]
        order = [k for k, _ in sorted(((k, bob.seen[k]) for k in got), key=lambda kv: kv[1])]
        reordered = sum(1 for a, b in zip(order, order[1:]) if b < a)
        dup = sum(1 for _, l in bob.lines if SEQ.search(l)) - len(got)

        def row(label, v):
            return (f"| {label} | {len(v)} | {pct(v, 0.5):.1f} | {pct(v, 0.9):.1f} | "
                    f"{pct(v, 0.99):.1f} | {max(v) if v else float('nan'):.1f} |")

        print(f"fan-out across 3 instances: {n} lines said on A by {len(senders)} users "
              f"(line-mode shells, {rate:g} lines/s overall), read in bob's line-mode shell on C; "
              f"peers converged in {converged:.1f} s")
        print()
        print("| latency (ms) | lines | p50 | p90 | p99 | max |")
        print("|---|---:|---:|---:|---:|---:|")
        print(row("written on A → shown on C", from_write))
        print(row("shown on A (sender's own shell) → shown on C", from_echo))
        print(row("written on A → shown on A", on_a))
        print()
        print(f"lines that reached C: {len(got)} / {n}; out of order: {reordered}; "
              f"shown twice: {dup}; goal p99 < 100 ms: "
              f"{'met' if from_write and pct(from_write, 0.99) < 100 else 'NOT met'}")
    finally:
        for s in sessions:
            s.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("part", choices=["fanout"])
    for n in "abc":
        p.add_argument(f"--{n}-ip", required=True)
        p.add_argument(f"--{n}-port", type=int, required=True)
        p.add_argument(f"--{n}-domain", required=True)
    p.add_argument("--keys", required=True)
    p.add_argument("--client-ip", default="127.0.0.9")
    p.add_argument("--senders", type=int, default=40)
    p.add_argument("--lines", type=int, default=200)
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--converge-timeout", type=float, default=120.0)
    p.add_argument("--drain-timeout", type=float, default=60.0)
    args = p.parse_args()
    fanout(args)


if __name__ == "__main__":
    main()
