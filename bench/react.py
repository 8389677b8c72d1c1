#!/usr/bin/env python3
"""make bench-react: reactions relayed per second and the latency qrxferd adds (bench/README.md).

One qrxferd (plain build, SQLite store, [react] rate and burst 1000, the most the config takes)
on loopback, with K calls up (A_k -> qrxferd -> C; the plain UDP phones of tests/move/react.py
set them up, C's answer says it takes the reaction JSON). Then, three runs each:

  latency     N reactions (MESSAGE application/vnd.qrxfer.reaction+json) from the A sides,
              one at a time, round robin over the calls: each timed from A's send to C's
              receipt of the JSON qrxferd relays. The same N sent straight from A's socket to
              C's (no qrxferd) give the driver's own time: "added" is the difference of the
              medians.
  throughput  N reactions from the A sides with up to WINDOW relayed reactions outstanding
              (sent, not yet at C), over the K calls: relayed per second from the first send
              to the last arrival at C, and qrxferd's CPU time per reaction (utime + stime from
              /proc). One Python process drives both sides: the rate may be the driver's own
              limit; the CPU per reaction is qrxferd's alone.

Prints the median of the three runs (and of their p99s). K = BENCH_REACT_CALLS (10), N =
BENCH_REACT_N (3000), WINDOW = BENCH_REACT_WINDOW (64). Only 127.0.0.1 is used.
"""
import json
import os
import select
import socket
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "move"))
import benchlib  # noqa: E402
import react as phones  # noqa: E402  (tests/move/react.py: the phones that set the calls up)

B = os.environ.get("top_builddir", ".")
K = benchlib.env_int("BENCH_REACT_CALLS", 10)
N = benchlib.env_int("BENCH_REACT_N", 3000)
WINDOW = benchlib.env_int("BENCH_REACT_WINDOW", 64)
CT = phones.CT
TICK = os.sysconf("SC_CLK_TCK")


def conf(d, sip, http, up):
    open(os.path.join(d, "admin.token"), "w").write("t" * 48 + "\n")
    return """[module]
load = mod_qrxfer.so
[log]
level = warn
[sip]
listen = sip:127.0.0.1:%d
domain = qrxfer.test
upstream = sip:127.0.0.1:%d
[http]
listen = 127.0.0.1:%d
admin_token_file = %s/admin.token
[store]
url = sqlite://%s/qrxfer.db
[codes]
hmac_key_file = %s/hmac.key
[react]
rate = 1000
burst = 1000
""" % (sip, up, http, d, d, d)


def header(data, name):
    i = data.find(b"\r\n" + name + b":")
    if i < 0:
        return b""
    j = data.find(b"\r\n", i + 2)
    return data[i + len(name) + 3:j].strip()


def answer_200(sock, data, to_addr):
    """C's 200 to a MESSAGE qrxferd relayed (its Vias, From, To, Call-ID, CSeq echoed)."""
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    keep = [h for h in head[1:] if h.split(b":", 1)[0].strip().lower() in
            (b"via", b"v", b"from", b"f", b"to", b"t", b"call-id", b"i", b"cseq")]
    sock.sendto(b"SIP/2.0 200 OK\r\n" + b"\r\n".join(keep) + b"\r\nContent-Length: 0\r\n\r\n",
                to_addr)


class Driver:
    def __init__(self, a_phones, c_phone, qport):
        self.a = a_phones
        self.c = c_phone
        self.q = ("127.0.0.1", qport)
        self.seq = 0

    def message(self, k):
        """A_k's next reaction MESSAGE in its dialog; x carries a number C can read back."""
        a = self.a[k]
        d = a.dlg
        d["cseq"] += 1
        self.seq += 1
        body = json.dumps({"emoji": "\U0001F44D", "x": (self.seq % 10000) / 10000.0, "y": 0.5})
        body = body.encode()
        return ("MESSAGE %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-bench-%d\r\n"
                "From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d MESSAGE\r\nMax-Forwards: 70\r\n"
                "Content-Type: %s\r\nContent-Length: %d\r\n\r\n" % (
                    d["target"], a.me(), self.seq, d["from_"], d["to"], d["call_id"], d["cseq"],
                    CT, len(body))).encode() + body, self.seq % 10000

    def drain_a(self):
        """qrxferd's answers to A (200; a 503 means the rate limit bit: a wrong figure)."""
        for a in self.a:
            while True:
                try:
                    data = a.s.recv(65536, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                if data.startswith(b"SIP/2.0 ") and not data.startswith(b"SIP/2.0 200"):
                    raise SystemExit("qrxferd answered a reaction %s" % data.split(b"\r\n")[0])

    def c_recv(self, timeout):
        """One reaction at C: (time, the number in its x), answered 200; None on timeout."""
        r, _, _ = select.select([self.c.s], [], [], timeout)
        if not r:
            return None
        data, addr = self.c.s.recvfrom(65536)
        t = time.perf_counter()
        if not data.startswith(b"MESSAGE "):
            return (t, None)
        answer_200(self.c.s, data, addr)
        body = data.split(b"\r\n\r\n", 1)[1]
        try:
            x = json.loads(body)["x"]
        except (ValueError, KeyError):
            return (t, None)
        return (t, int(round(x * 10000)))

    def latency(self, n, direct):
        lat = []
        for i in range(n):
            k = i % len(self.a)
            msg, num = self.message(k)
            t0 = time.perf_counter()
            self.a[k].s.sendto(msg, self.c.s.getsockname() if direct else self.q)
            while True:
                got = self.c_recv(5)
                if got is None:
                    raise SystemExit("reaction %d did not reach C within 5 s" % i)
                if got[1] == num:
                    break
            lat.append((got[0] - t0) * 1000.0)
            self.drain_a()  # qrxferd's 200, or C's straight
        return lat

    def throughput(self, n, pid):
        sent = arrived = 0
        cpu0 = benchlib.cpu_ticks([pid])
        t0 = time.perf_counter()
        last = t0
        while arrived < n:
            while sent < n and sent - arrived < WINDOW:
                msg, _ = self.message(sent % len(self.a))
                self.a[sent % len(self.a)].s.sendto(msg, self.q)
                sent += 1
            got = self.c_recv(5)
            if got is None:
                raise SystemExit("throughput: %d of %d reached C, then nothing for 5 s" % (
                    arrived, n))
            if got[1] is not None:
                arrived += 1
                last = got[0]
            if arrived % 256 == 0:
                self.drain_a()
        self.drain_a()
        cpu = (benchlib.cpu_ticks([pid]) - cpu0) / TICK
        return n / (last - t0), cpu / n * 1e6


def main():
    d = tempfile.mkdtemp(prefix="qrxfer-bench-react-")
    sip = benchlib.free_port(1)
    http = benchlib.free_port()
    up = benchlib.free_port()
    open(os.path.join(d, "qrxfer.conf"), "w").write(conf(d, sip, http, up))
    p = benchlib.spawn([os.path.join(B, "qrxferd"), "-c", os.path.join(d, "qrxfer.conf"),
                        "-M", os.path.join(B, ".libs")], os.path.join(d, "qrxferd.log"), d)
    if not benchlib.sip_ping(sip, 10):
        raise SystemExit("qrxferd did not start (see %s/qrxferd.log)" % d)
    try:
        c = phones.Phone("C", up, sip, accept_json=True)
        a_phones = []
        for k in range(K):
            a = phones.Phone("A%d" % k, benchlib.free_port(), sip)
            a.call("sip:far@127.0.0.1:%d" % up)
            a_phones.append(a)
        phones.pump(0.3)
        drv = Driver(a_phones, c, sip)
        drv.latency(min(N, 200), False)  # warm up: C is known to take JSON by now
        via, direct, rate, cpu = [], [], [], []
        for _ in range(3):
            via.append(drv.latency(N, False))
            direct.append(drv.latency(N, True))
            time.sleep(1.1)  # [react] buckets refill
            r, c_us = drv.throughput(N, p.pid)
            rate.append(r)
            cpu.append(c_us)
            time.sleep(1.1)
    finally:
        benchlib.stop(p)

    def p99(r):
        return sorted(r)[int(len(r) * 0.99) - 1]

    med_via = statistics.median(statistics.median(r) for r in via)
    med_direct = statistics.median(statistics.median(r) for r in direct)
    print("reactions: %d calls, %d reactions a run, median of 3 runs" % (K, N))
    print("%-46s median %.3f ms, p99 %.3f ms" % ("A -> qrxferd -> C, one at a time", med_via,
                                                 statistics.median(p99(r) for r in via)))
    print("%-46s median %.3f ms, p99 %.3f ms" % ("A -> C straight (the driver's own time)",
                                                 med_direct,
                                                 statistics.median(p99(r) for r in direct)))
    print("%-46s median %.3f ms" % ("added by qrxferd", med_via - med_direct))
    print("%-46s %.0f a second (window %d; runs %s)" % (
        "relayed, as fast as the driver goes", statistics.median(rate), WINDOW,
        ", ".join("%.0f" % r for r in rate)))
    print("%-46s %.1f us a reaction" % ("qrxferd CPU (utime+stime)", statistics.median(cpu)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        benchlib.cleanup()
