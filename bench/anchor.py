#!/usr/bin/env python3
"""qrxfer anchor benchmark (make bench-anchor): what the media anchor (rtpengine) costs a move
and a call, and how soon a move's media is verified. See bench/README.md.

What runs, all on 127.0.0.1 over UDP, twice: without the anchor ("plain") and with it
("anchor", rtpengine userspace-only, [move] undo_secs = 0 so A's BYE follows verification):
  A  sipp -sf move-a.xml  ->  qrxferd  ->  C  sipp -sf move-c.xml   (BENCH_ANCHOR_CALLS calls)
  codes: POST /v1/calls/{id}/moves;  B  sipp -sf anchor-b.xml -inf codes.csv at each rate
  anchored: this script is the media of B and C: for every call of a step it sends RTP (PCMU,
  BENCH_ANCHOR_PPS packets/s a stream) to rtpengine's near and far ports (found by ng query).
Prints per mode and rate: moves complete (the daemon's moved lines; anchored, verified
lines), moves/s over their span, B's INVITE -> 200 to B (daemon's clock, median/p99), and
anchored, B's answer -> media verified (median/p99); per mode the CPU seconds qrxferd (and
rtpengine, apart) spent per call while A placed the calls, and per move while B moved them.
Environment: BENCH_ANCHOR_CALLS [300], BENCH_ANCHOR_RATES [25 50 100], BENCH_ANCHOR_PPS [50],
RTPENGINE [from PATH], SIPP, QRXFERD (as bench-move), BENCH_KEEP.
"""
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import move as bm  # noqa: E402
from benchlib import env_int, free_port, sip_ping, spawn, stop  # noqa: E402

CALLS = env_int("BENCH_ANCHOR_CALLS", 300)
RATES = [int(x) for x in os.environ.get("BENCH_ANCHOR_RATES", "25 50 100").split()]
PPS = env_int("BENCH_ANCHOR_PPS", 50)
RTPENGINE = os.environ.get("RTPENGINE") or shutil.which("rtpengine")
MOVED = re.compile(r"move: (\S+): moved: near leg moved to .*redeem to (?:re-INVITE|switch) "
                   r"(-?\d+) us, to answer (-?\d+) us")
VERIFIED = re.compile(r"move: (\S+): verified: .* (\d+) ms after its answer")
FAILED = re.compile(r"move: (\S+): failed: (.*)")


def bencode(x):
    if isinstance(x, int):
        return b"i%de" % x
    if isinstance(x, str):
        x = x.encode()
    if isinstance(x, bytes):
        return b"%d:%s" % (len(x), x)
    if isinstance(x, list):
        return b"l" + b"".join(bencode(i) for i in x) + b"e"
    return b"d" + b"".join(bencode(k) + bencode(v) for k, v in x.items()) + b"e"


def ng_ports(ng_port, call_id):
    """rtpengine's local RTP ports facing near and far for a call, from an ng query."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    try:
        s.sendto(b"q%08x " % random.getrandbits(32) + bencode({"command": "query",
                                                              "call-id": call_id}),
                 ("127.0.0.1", ng_port))
        r = s.recv(65535)
    except OSError:
        return None
    finally:
        s.close()
    out = {}
    for tag in (b"near", b"far"):
        # the tag's own dict under "tags" (a subscription names the other tag too)
        i = r.find(b"%d:%sd3:tag%d:%s" % (len(tag), tag, len(tag), tag))
        m = re.compile(rb"10:local porti(\d+)e").search(r, i) if i >= 0 else None
        if m:
            out[tag.decode()] = int(m.group(1))
    return out if len(out) == 2 else None


class Blaster:
    """RTP to rtpengine's ports of the calls given, PPS packets/s a stream, until stopped."""

    def __init__(self, targets):
        self.targets = targets
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.sent = 0

    def run(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        seq, ts, ssrc = 0, 0, random.getrandbits(32)
        payload = b"\xff" * 160
        while not self.stop.is_set():
            t0 = time.monotonic()
            hdr = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
            for port in self.targets:
                try:
                    s.sendto(hdr + payload, ("127.0.0.1", port))
                    self.sent += 1
                except OSError:
                    pass
            seq += 1
            ts += 160
            self.stop.wait(max(0.0, 1.0 / PPS - (time.monotonic() - t0)))
        s.close()

    def start(self):
        self.t.start()

    def finish(self):
        self.stop.set()
        self.t.join(5)


def run_mode(scratch, anchored):
    mode = "anchor" if anchored else "plain"
    d = os.path.join(scratch, mode)
    os.makedirs(d)
    res = {"mode": mode, "steps": []}
    rte = c = a = daemon = None
    try:
        ng_port = free_port(1)
        if anchored:
            rtp_lo = free_port(CALLS * 8 + 400)  # a re-point takes new ports
            rte = spawn([RTPENGINE, "--foreground", "--log-stderr", "--config-file=none",
                         "--table=-1", "--interface=127.0.0.1",
                         f"--listen-ng=127.0.0.1:{ng_port}", f"--port-min={rtp_lo}",
                         f"--port-max={rtp_lo + CALLS * 8 + 398}", "-L", "4"],
                        os.path.join(d, "rtpengine.log"), d)
            time.sleep(1.0)
        c_dir = os.path.join(d, "c")
        os.makedirs(c_dir)
        c_port = free_port(1)
        c = spawn([bm.SIPP, "-sf", os.path.join(HERE, "move-c.xml"), "-p", str(c_port),
                   "-mp", str(free_port(4)), "-m", str(CALLS), "-max_socket", bm.max_socket(),
                   "-stf", os.path.join(c_dir, "c.csv"), "-trace_err", "-error_file",
                   os.path.join(c_dir, "c.err"), "-timeout", "600s"] + bm.SIPP_COMMON,
                  os.path.join(c_dir, "c.out"), c_dir)
        time.sleep(0.5)
        ddir = os.path.join(d, "qrxferd")
        os.makedirs(ddir)
        daemon = bm.Daemon(ddir, free_port(1), free_port(1), c_port)
        if anchored:
            # the anchor's keys, then a restart: Daemon writes the config and starts at once
            stop(daemon.proc)
            with open(os.path.join(ddir, "qrxfer.conf"), "a") as f:
                f.write(f"[media]\nrtpengine = udp:127.0.0.1:{ng_port}\n[move]\nundo_secs = 0\n")
            daemon.proc = spawn([bm.QRXFERD, "-c", os.path.join(ddir, "qrxfer.conf"), "-M",
                                 bm.MODDIR], daemon.logpath, ddir)
            if not sip_ping(daemon.port, 15):
                raise RuntimeError("qrxferd with the anchor does not answer OPTIONS")
        q0, r0 = bm.cpu_s(daemon.proc.pid), bm.cpu_s(rte.pid) if rte else None
        a, a_dir, up, fill, acked = fill_calls(d, daemon, c_port)
        q1, r1 = bm.cpu_s(daemon.proc.pid), bm.cpu_s(rte.pid) if rte else None
        res["up"] = len(up)
        res["fill_s"] = fill
        res["cpu_call_q"] = (q1 - q0) / max(1, len(up))
        res["cpu_call_r"] = (r1 - r0) / max(1, len(up)) if rte else None
        bm.log(f"[{mode}] {len(up)} calls up in {fill:.1f} s; qrxferd CPU "
               f"{res['cpu_call_q'] * 1e6:.0f} us a call"
               + (f", rtpengine {res['cpu_call_r'] * 1e6:.0f} us a call (apart)" if rte else ""))
        random.shuffle(up)
        pending = list(up)
        for rate in RATES:
            n = min(max(rate * 2, 20), len(pending))
            if n < 1:
                break
            calls, pending = pending[:n], pending[n:]
            blaster = None
            if anchored:
                targets = []
                for cid in calls:
                    p = ng_ports(ng_port, cid)
                    if p:
                        targets += [p["near"], p["far"]]
                blaster = Blaster(targets)
                blaster.start()
                time.sleep(0.5)
            codes, lat, wall, errs = bm.create_codes(daemon, calls)
            good = [x for x in codes if x]
            off = daemon.log_size()
            q0 = bm.cpu_s(daemon.proc.pid)
            r0 = bm.cpu_s(rte.pid) if rte else None
            step = run_b(d, daemon, rate, good)
            time.sleep(1.5 if anchored else 0.5)  # the last verifications
            q1 = bm.cpu_s(daemon.proc.pid)
            r1 = bm.cpu_s(rte.pid) if rte else None
            if blaster:
                blaster.finish()
            text = daemon.log_since(off)
            moved = [(int(m.group(2)), int(m.group(3)), m.group(0)) for m in MOVED.finditer(text)]
            verified = [int(m.group(2)) for m in VERIFIED.finditer(text)]
            failed = [m.group(2) for m in FAILED.finditer(text)]
            times = [bm.line_s(line) for line in text.splitlines()
                     if (VERIFIED if anchored else MOVED).search(line)]
            times = [t for t in times if t is not None]
            span = times[-1] - times[0] if len(times) > 1 else None
            complete = len(verified) if anchored else len(moved)
            st = {"rate": rate, "n": len(good), "complete": complete, "failed": failed,
                  "span": span, "answer_us": [x[1] for x in moved], "verified_ms": verified,
                  "b_rc": step, "cpu_q": (q1 - q0) / max(1, complete),
                  "cpu_r": (r1 - r0) / max(1, complete) if rte else None}
            res["steps"].append(st)
            bm.log(f"[{mode}] {rate} moves/s x {len(good)}: {complete} complete"
                   + (f" ({len(failed)} failed, first: {failed[0]})" if failed else "")
                   + (f", {complete / span:.0f}/s over {span:.2f} s" if span else "")
                   + f"; B's INVITE -> 200 to B median {bm.median(st['answer_us']) / 1000:.2f} ms"
                   f", p99 {bm.pct(st['answer_us'], 99) / 1000:.2f} ms"
                   + (f"; B's answer -> verified median {bm.median(verified):.0f} ms, p99 "
                      f"{bm.pct(verified, 99):.0f} ms" if anchored else "")
                   + f"; qrxferd CPU {st['cpu_q'] * 1e6:.0f} us a move"
                   + (f", rtpengine {st['cpu_r'] * 1e6:.0f} us a move with {PPS} pps a stream "
                      f"(apart)" if rte else ""))
    finally:
        for p in (a, c, rte):
            if p:
                stop(p, signal.SIGKILL, 5)
        if daemon:
            stop(daemon.proc)
    return res


def fill_calls(d, daemon, c_port):
    """bench/move.py's fill_calls with anchor-a.xml (A takes the anchor's hold re-INVITE)."""
    a_dir = os.path.join(d, "a")
    os.makedirs(a_dir)
    a = spawn([bm.SIPP, "-sf", os.path.join(HERE, "anchor-a.xml"), f"127.0.0.1:{daemon.port}",
               "-s", "far", "-key", "upport", str(c_port), "-p", str(free_port(1)),
               "-mp", str(free_port(4)), "-r", "200",
               "-m", str(CALLS), "-l", str(CALLS), "-max_socket", bm.max_socket(),
               "-stf", os.path.join(a_dir, "a.csv"), "-trace_err", "-error_file",
               os.path.join(a_dir, "a.err"), "-timeout", "600s"] + bm.SIPP_COMMON,
              os.path.join(a_dir, "a.out"), a_dir)
    t0 = time.monotonic()

    def acks():
        return bm.count_col(bm.last_row(bm.counts_file(a_dir, "anchor-a_")), "_ACK_Sent")

    while acks() < CALLS and a.poll() is None and time.monotonic() - t0 < 60:
        time.sleep(0.5)
    fill = time.monotonic() - t0
    time.sleep(1.0)
    api = bm.Api(daemon.http, daemon.token)
    st, body = api.call("GET", "/v1/calls")
    api.close()
    calls = json.loads(body)["calls"] if st == 200 else []
    return a, a_dir, [c["id"] for c in calls if c.get("state") == "answered"], fill, acks()


def run_b(d, daemon, rate, codes):
    bd = os.path.join(d, f"b{rate}")
    os.makedirs(bd)
    with open(os.path.join(bd, "codes.csv"), "w") as f:
        f.write("SEQUENTIAL\n" + "".join(c + ";\n" for c in codes))
    n = len(codes)
    bound = int(n / rate + 30)
    b = spawn([bm.SIPP, "-sf", os.path.join(HERE, "anchor-b.xml"), f"127.0.0.1:{daemon.port}",
               "-inf", os.path.join(bd, "codes.csv"), "-d", "3000", "-p", str(free_port(1)),
               "-mp", str(free_port(4)), "-r", str(rate), "-m", str(n), "-l", str(n),
               "-max_socket", bm.max_socket(), "-stf", os.path.join(bd, "b.csv"),
               "-trace_err", "-error_file", os.path.join(bd, "b.err"), "-timeout",
               f"{bound}s"] + bm.SIPP_COMMON, os.path.join(bd, "b.out"), bd)
    try:
        return b.wait(bound + 10)
    except subprocess.TimeoutExpired:
        stop(b, signal.SIGKILL, 5)
        return None


def main():
    if not RTPENGINE:
        sys.exit("bench-anchor: rtpengine not installed")
    scratch = tempfile.mkdtemp(prefix="qrx-bench-anchor.")
    bm.log(f"qrxfer bench-anchor: {CALLS} calls, move rates {RATES}/s, anchored media "
           f"{PPS} pps a stream from this script; nproc {os.cpu_count()}, load "
           f"{os.getloadavg()[0]:.2f}")
    try:
        for anchored in (False, True):
            run_mode(scratch, anchored)
    finally:
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            bm.log(f"kept {scratch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
