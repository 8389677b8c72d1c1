#!/usr/bin/env python3
"""qrxfer move benchmark: complete moves per second with many calls up, and the latency
qrxfer adds to a move. Run through `make bench-move` (bench/move.sh); see bench/README.md.

What runs, all on 127.0.0.1 over UDP:
  A  sipp -sf move-a.xml  ->  qrxferd  ->  C  sipp -sf move-c.xml   (BENCH_MOVE_CALLS calls, held)
  codes: POST /v1/calls/{id}/moves over the admin API (keep-alive connections)
  B  sipp -sf move-b.xml -inf codes.csv  ->  qrxferd  (re-INVITE to C, 200 to B, BYE to A)

Prints:
  1. how long code creation took (its own figure);
  2. per rate step: moves asked, moves complete (counted three ways: B's successful calls,
     A's BYEs carrying the move's Reason, the daemon's "moved" lines) and failures; the highest
     rate with 0 failed moves, and complete moves per second over the run;
  3. the latency qrxfer adds: from B's INVITE to the re-INVITE leaving for C, and from B's
     INVITE to B's 200 OK (median, p99), from the daemon's own "moved" lines; the second is
     cross-checked with SIPp's response time on B (INVITE sent -> 200 received), which also
     holds SIPp's own overhead and C's turnaround.
Environment (defaults in brackets; BENCH_QUICK=1: 1,000 calls):
  QRXFERD, QRXFER_MODULE_DIR, QRXFER_MODULE  the daemon [$top_builddir/qrxferd, .libs, mod_qrxfer.so]
  SIPP                       [from PATH]
  BENCH_MOVE_CALLS           calls up before the moves start [10000; quick 1000]
  BENCH_MOVE_CALL_RATE       calls/s while A fills them up [500]
  BENCH_MOVE_RATES           move rates tried in order, stopping at the first failure
                             [100 200 350 500 700]
  BENCH_MOVE_STEP_S          seconds of B traffic per rate [what fits in 90 % of the calls]
  BENCH_MOVE_KEY             what B dials: token (sip:m.<token>@) or code (sip:*88<digits>@) [token]
  BENCH_MOVE_HTTP_CONNS      keep-alive connections creating codes in parallel [4]
  BENCH_MOVE_PCAP            1: tcpdump on lo during the B steps, wire timings per move [1 when
                             root and tcpdump is there; 0 turns it off]
  BENCH_MOVE_PERF            when set: perf record qrxferd during the B steps, print the top
  BENCH_KEEP                 keep the scratch folder (logs, SIPp files)
"""
import csv
import http.client
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import (cleanup, env_int, free_port, last_row, live, sip_ping, spawn,
                      stat_int, stop)

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_BUILD = os.environ.get("top_builddir") or os.getcwd()
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")


CALLS = env_int("BENCH_MOVE_CALLS", 1000 if QUICK else 10000)
CALL_RATE = env_int("BENCH_MOVE_CALL_RATE", 500)
RATES = [int(x) for x in os.environ.get("BENCH_MOVE_RATES", "100 200 350 500 700").split()]
STEP_S = float(os.environ.get("BENCH_MOVE_STEP_S", "0") or 0) or max(
    0.5, int(CALLS * 0.9 / sum(RATES) * 10) / 10)
KEY = os.environ.get("BENCH_MOVE_KEY", "token")
CONNS = env_int("BENCH_MOVE_HTTP_CONNS", 4)
PERF = os.environ.get("BENCH_MOVE_PERF", "") not in ("", "0")
PCAP = os.environ.get("BENCH_MOVE_PCAP", "1" if os.geteuid() == 0 and shutil.which("tcpdump")
                      else "0") not in ("", "0")
QRXFERD = os.environ.get("QRXFERD") or os.path.join(TOP_BUILD, "qrxferd")
MODDIR = os.environ.get("QRXFER_MODULE_DIR") or os.path.join(TOP_BUILD, ".libs")
MODULE = os.environ.get("QRXFER_MODULE") or "mod_qrxfer.so"
SIPP = os.environ.get("SIPP") or shutil.which("sipp") or "sipp"
B_HOLD_MS = 8000  # B keeps each call in SIPp this long after its ACK: 200s repeated are ACKed
RUN_BOUND_S = 14 * 60  # every SIPp gets at most this; the whole run stays under 15 min

GOAL_MOVES = 500
GOAL_MEDIAN_US = 1000
GOAL_P99_US = 5000

findings = []  # daemon misbehaviour seen during the run
T0 = time.monotonic()


def log(msg):
    print(msg, flush=True)


def left_s():
    return RUN_BOUND_S - (time.monotonic() - T0)


def cpu_s(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except OSError:
        return None
    fields = st[st.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def counts_file(d, prefix):
    for f in os.listdir(d):
        if f.startswith(prefix) and f.endswith("_counts.csv"):
            return os.path.join(d, f)
    return "/nonexistent"


def count_col(row, suffix):
    return sum(int(v) for k, v in row.items() if k.endswith(suffix) and v.strip().isdigit())


def pct(xs, p):
    """The p-th percentile (nearest rank) of xs."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def median(xs):
    return pct(xs, 50)


class Daemon:
    def __init__(self, d, sip_port, http_port, c_port):
        self.d, self.port, self.http = d, sip_port, http_port
        self.logpath = os.path.join(d, "qrxferd.log")
        self.token = "bench-move-%016x" % random.getrandbits(64)
        tok = os.path.join(d, "admin.token")
        with open(tok, "w") as f:
            f.write(self.token + "\n")
        conf = os.path.join(d, "qrxfer.conf")
        # log level info: the "moved" line per move carries the daemon's own timings
        with open(conf, "w") as f:
            f.write(
                f"[module]\nload = {MODULE}\n[log]\nlevel = info\n"
                f"[sip]\nlisten = sip:127.0.0.1:{sip_port}\ndomain = qrxfer.test\n"
                f"upstream = sip:127.0.0.1:{c_port}\n"
                f"[http]\nlisten = 127.0.0.1:{http_port}\nadmin_token_file = {tok}\n"
                f"[store]\nurl = sqlite://{d}/qrxfer.db\n"
                f"[codes]\nhmac_key_file = {d}/hmac.key\n"
            )
        self.proc = spawn([QRXFERD, "-c", conf, "-M", MODDIR], self.logpath, d)
        if not sip_ping(sip_port, 15):
            raise RuntimeError(f"qrxferd not answering OPTIONS on 127.0.0.1:{sip_port} "
                               f"(exit status {self.proc.poll()}); see {self.logpath}")

    def log_size(self):
        return os.path.getsize(self.logpath)

    def log_since(self, off):
        with open(self.logpath, "rb") as f:
            f.seek(off)
            return f.read().decode("utf-8", "replace")


class Api:
    """Keep-alive admin HTTP connection."""

    def __init__(self, port, token):
        self.port, self.auth = port, {"Authorization": "Bearer " + token}
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method, path):
        try:
            self.c.request(method, path, body=b"" if method == "POST" else None,
                           headers=self.auth)
            r = self.c.getresponse()
            return r.status, r.read()
        except (OSError, http.client.HTTPException) as e:
            self.c.close()
            self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            return 0, str(e).encode()

    def close(self):
        self.c.close()


def create_codes(daemon, call_ids):
    """POST a move on each call over CONNS keep-alive connections.
    Returns (codes in call order or None per failure, latencies in s, wall s, errors)."""
    out = [None] * len(call_ids)
    lat = []
    errors = []
    lock = threading.Lock()
    nxt = [0]

    def worker():
        api = Api(daemon.http, daemon.token)
        mine = []
        try:
            while True:
                with lock:
                    i = nxt[0]
                    nxt[0] += 1
                if i >= len(call_ids):
                    break
                t = time.perf_counter()
                st, body = api.call("POST", f"/v1/calls/{call_ids[i]}/moves")
                mine.append(time.perf_counter() - t)
                if st != 201:
                    with lock:
                        errors.append(f"{st} {body[:160]!r}")
                    continue
                m = json.loads(body)
                token = m["qr_uri"].split(":", 1)[1].split("@")[0]  # m.<TOKEN>
                out[i] = token if KEY == "token" else "*88" + m["code"]
        finally:
            api.close()
            with lock:
                lat.extend(mine)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(max(1, CONNS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, left_s()))
    return out, lat, time.perf_counter() - t0, errors


SIPP_COMMON = ["-i", "127.0.0.1", "-nostdin", "-t", "u1", "-trace_stat", "-trace_counts",
               "-fd", "1"]


def max_socket():
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return str(max(1024, min(60000, soft - 200)))


def wait_for(fn, secs, step=0.2):
    deadline = time.monotonic() + secs
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


LINE_TS = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) ")
# the move's completion line ("moved:", once "done:"): near leg moved to ...; redeem to ...
DONE = re.compile(r"qrxfer: move: (\S+): \S+: near leg moved to .*redeem to re-INVITE (-?\d+) us, "
                  r"to answer (-?\d+) us")
FAILED = re.compile(r"qrxfer: move: (\S+): failed: (.*)")
REFUSED = re.compile(r"qrxfer: move: code from \S+ refused: (.*)")


def line_s(line):
    m = LINE_TS.match(line)
    if not m:
        return None
    h, mi, s, ms = (int(x) for x in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000.0


def parse_daemon(text):
    done, failed, refused, t_done = [], [], [], []
    for line in text.splitlines():
        m = DONE.search(line)
        if m:
            done.append((int(m.group(2)), int(m.group(3))))
            t = line_s(line)
            if t is not None:
                t_done.append(t)
            continue
        m = FAILED.search(line)
        if m:
            failed.append(m.group(2))
            continue
        m = REFUSED.search(line)
        if m:
            refused.append(m.group(1))
    if len(t_done) > 1 and t_done[-1] < t_done[0]:  # across midnight (UTC)
        t_done = [t + 86400 if t < t_done[0] else t for t in t_done]
    return done, failed, refused, t_done


def rtt_ms(d):
    """SIPp's response times 1 on B (INVITE sent -> 200 received), in ms."""
    out = []
    for f in os.listdir(d):
        if not f.endswith("_rtt.csv"):
            continue
        with open(os.path.join(d, f), newline="") as fh:
            for row in csv.reader(fh, delimiter=";"):
                if len(row) >= 3 and row[2].strip() == "1":
                    try:
                        out.append(float(row[1]))
                    except ValueError:
                        pass
    return out


def a_moved(a_dir):
    return stat_int(last_row(os.path.join(a_dir, "a.csv")), "SuccessfulCall(C)")


def fill_calls(scratch, daemon, c_port):
    a_dir = os.path.join(scratch, "a")
    os.makedirs(a_dir)
    a_port = free_port(1)
    bound = int(max(60, left_s() - 30))
    a = spawn([SIPP, "-sf", os.path.join(HERE, "move-a.xml"), f"127.0.0.1:{daemon.port}",
               "-s", "far", "-key", "upport", str(c_port), "-p", str(a_port),
               "-mp", str(free_port(4)), "-r", str(CALL_RATE), "-m", str(CALLS), "-l",
               str(CALLS), "-max_socket", max_socket(), "-stf", os.path.join(a_dir, "a.csv"),
               "-trace_err", "-error_file", os.path.join(a_dir, "a.err"),
               "-timeout", f"{bound}s"] + SIPP_COMMON, os.path.join(a_dir, "a.out"), a_dir)
    t0 = time.monotonic()

    def acks():
        return count_col(last_row(counts_file(a_dir, "move-a_")), "_ACK_Sent")

    last, last_t = -1, time.monotonic()
    while True:
        n = acks()
        if n >= CALLS or a.poll() is not None:
            break
        if n != last:
            last, last_t = n, time.monotonic()
        if time.monotonic() - last_t > 40:  # no call answered for 40 s: give up
            break
        time.sleep(0.5)
    fill = time.monotonic() - t0
    time.sleep(1.0)
    api = Api(daemon.http, daemon.token)
    st, body = api.call("GET", "/v1/calls")
    api.close()
    if st != 200:
        raise RuntimeError(f"GET /v1/calls: {st} {body[:200]!r}")
    calls = json.loads(body)["calls"]
    up = [c["id"] for c in calls if c.get("state") == "answered"]
    return a, a_dir, up, fill, acks()


def b_step(scratch, daemon, rate, codes, a_dir, c_dir):
    """One rate: B dials len(codes) codes at rate/s. Returns what was seen."""
    d = os.path.join(scratch, f"b{rate}")
    os.makedirs(d)
    n = len(codes)
    with open(os.path.join(d, "codes.csv"), "w") as f:
        f.write("SEQUENTIAL\n")
        for c in codes:
            f.write(c + ";\n")
    off = daemon.log_size()
    a0 = a_moved(a_dir)
    c0 = stat_int(last_row(os.path.join(c_dir, "c.csv")), "FailedCall(C)")
    cpu0 = cpu_s(daemon.proc.pid)
    bound = int(n / rate + B_HOLD_MS / 1000 + 40)
    t0 = time.monotonic()
    b = spawn([SIPP, "-sf", os.path.join(HERE, "move-b.xml"), f"127.0.0.1:{daemon.port}",
               "-inf", os.path.join(d, "codes.csv"), "-d", str(B_HOLD_MS),
               "-p", str(free_port(1)),
               "-mp", str(free_port(4)), "-r", str(rate), "-m", str(n), "-l", str(n),
               "-max_socket", max_socket(), "-stf", os.path.join(d, "b.csv"), "-trace_rtt",
               "-rtt_freq", "1", "-trace_err", "-error_file", os.path.join(d, "b.err"),
               "-timeout", f"{bound}s"] + SIPP_COMMON, os.path.join(d, "b.out"), d)
    try:
        rc = b.wait(bound + 10)
    except subprocess.TimeoutExpired:
        rc = None
    wall = time.monotonic() - t0
    stop(b, signal.SIGKILL, 5)
    cpu1 = cpu_s(daemon.proc.pid)
    # A's BYEs and the daemon's lines lag a little behind B's last ACK
    want = a0 + n
    wait_for(lambda: a_moved(a_dir) >= want, 5)
    time.sleep(1.2)  # one more SIPp statistics period
    bst = last_row(os.path.join(d, "b.csv"))
    done, failed, refused, t_done = parse_daemon(daemon.log_since(off))
    r = {
        "rate": rate, "n": n, "rc": rc, "wall": wall, "dir": d,
        "b_ok": stat_int(bst, "SuccessfulCall(C)"), "b_failed": stat_int(bst, "FailedCall(C)"),
        "b_retrans": stat_int(bst, "Retransmissions(C)"),
        "a_moved": a_moved(a_dir) - a0,
        "c_failed": stat_int(last_row(os.path.join(c_dir, "c.csv")), "FailedCall(C)") - c0,
        "done": done, "failed": failed, "refused": refused,
        "span": (t_done[-1] - t_done[0]) if len(t_done) > 1 else None,
        "rtt": rtt_ms(d),
        "cpu": (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None,
    }
    r["complete"] = min(r["b_ok"], r["a_moved"], len(done))
    r["fails"] = (n - r["complete"]) + len(failed) + len(refused) + r["b_failed"] + r["c_failed"]
    # the moves kept the asked rate: SIPp creates calls on time only while it and the daemon
    # keep up, and a move whose ACK was lost completes only at the 200's retransmission
    r["on_time"] = r["span"] is not None and r["span"] <= n / rate * 1.10 + 1
    r["pass"] = r["rc"] == 0 and r["fails"] == 0 and r["complete"] == n and r["on_time"]
    return r


def perf_start(pid, d):
    if not shutil.which("perf"):
        log("perf: not installed; no profile")
        return None
    p = spawn(["perf", "record", "-F", "999", "-g", "-p", str(pid), "-o",
               os.path.join(d, "perf.data")], os.path.join(d, "perf.out"), d)
    time.sleep(0.5)
    if p.poll() is not None:
        log(f"perf: record exited {p.returncode} (see {d}/perf.out); no profile")
        return None
    return p


def perf_report(p, d):
    stop(p, signal.SIGINT, 20)
    try:
        out = subprocess.run(["perf", "report", "-i", os.path.join(d, "perf.data"), "--stdio",
                              "--no-children", "--sort", "dso", "-g", "none"],
                             capture_output=True, text=True, timeout=120).stdout
        out2 = subprocess.run(["perf", "report", "-i", os.path.join(d, "perf.data"), "--stdio",
                               "--no-children", "--sort", "dso,sym", "-g", "none"],
                              capture_output=True, text=True, timeout=120).stdout
    except (subprocess.TimeoutExpired, OSError) as e:
        log(f"perf: report failed: {e}")
        return
    log("perf (qrxferd during the B steps, by library):")
    for line in [x for x in out.splitlines() if x.strip() and not x.startswith("#")][:12]:
        log("  " + line.strip())
    log("perf (top symbols):")
    for line in [x for x in out2.splitlines() if x.strip() and not x.startswith("#")][:25]:
        log("  " + line.strip())


def pcap_start(port, d):
    path = os.path.join(d, "moves.pcap")
    p = spawn(["tcpdump", "-i", "lo", "-n", "-s", "2000", "-B", "65536", "-w", path,
               f"udp port {port}"], os.path.join(d, "tcpdump.out"), d)
    if not wait_for(lambda: p.poll() is not None or "listening on" in open(
            os.path.join(d, "tcpdump.out"), errors="replace").read(), 5):
        pass
    if p.poll() is not None:
        log(f"pcap: tcpdump exited {p.returncode} (see {d}/tcpdump.out): no wire timings")
        return None
    return p, path


def pcap_stop(cap, d):
    p, path = cap
    stop(p, signal.SIGINT, 20)
    with open(os.path.join(d, "tcpdump.out"), errors="replace") as f:
        tail = f.read()
    m = re.search(r"(\d+) packets? dropped by kernel", tail)
    return path, int(m.group(1)) if m else None


def pcap_moves(path, port):
    """Wire times per move from a capture on lo: B's INVITE in, re-INVITE out (paired by the
    s= line, B's Call-ID), C's 200 in, B's 200 out (first copy of each; seconds)."""
    import struct
    b_in, re_out, far, c_in, b_out = {}, {}, {}, {}, {}
    with open(path, "rb") as f:
        gh = f.read(24)
        if len(gh) < 24:
            return {}
        magic, = struct.unpack("<I", gh[:4])
        endian, nano = ("<", False) if magic == 0xA1B2C3D4 else \
            ("<", True) if magic == 0xA1B23C4D else (">", magic == 0x4D3CB2A1)
        link, = struct.unpack(endian + "I", gh[20:24])
        while True:
            ph = f.read(16)
            if len(ph) < 16:
                break
            sec, frac, incl, _ = struct.unpack(endian + "IIII", ph)
            data = f.read(incl)
            t = sec + frac / (1e9 if nano else 1e6)
            off = 14 if link == 1 else 16 if link == 113 else 4 if link == 0 else 0
            if len(data) < off + 28 or (data[off] >> 4) != 4:
                continue
            ihl = (data[off] & 15) * 4
            sport, dport = struct.unpack(">HH", data[off + ihl:off + ihl + 4])
            msg = data[off + ihl + 8:].decode("latin-1")
            head, _, body = msg.partition("\r\n\r\n")
            lines = head.split("\r\n")
            first = lines[0]
            cid = cseq = None
            for ln in lines[1:]:
                k, _, v = ln.partition(":")
                k = k.strip().lower()
                if k in ("call-id", "i"):
                    cid = v.strip()
                elif k == "cseq":
                    cseq = v.strip()
            if not cid or not cseq or not cseq.endswith("INVITE"):
                continue
            if dport == port and first.startswith("INVITE sip:m.") or \
                    dport == port and first.startswith("INVITE sip:*88"):
                b_in.setdefault(cid, t)
            elif sport == port and first.startswith("INVITE "):
                m = re.search(r"^s=(.*)$", body, re.M)
                if m and m.group(1).strip() in b_in:
                    x = m.group(1).strip()
                    re_out.setdefault(x, t)
                    far[(cid, cseq)] = x
            elif dport == port and first.startswith("SIP/2.0 200") and (cid, cseq) in far:
                c_in.setdefault(far[(cid, cseq)], t)
            elif sport == port and first.startswith("SIP/2.0 200") and cid in b_in:
                b_out.setdefault(cid, t)
    out = {}
    for x, t0 in b_in.items():
        if x in re_out and x in c_in and x in b_out:
            out[x] = (re_out[x] - t0, b_out[x] - t0, (re_out[x] - t0) + (b_out[x] - c_in[x]))
    return out


def describe(r):
    return (f"{r['complete']}/{r['n']} complete (B ok {r['b_ok']}, A hung up with the move's "
            f"Reason {r['a_moved']}, daemon done {len(r['done'])}); failures: B {r['b_failed']}, "
            f"C {r['c_failed']}, daemon failed {len(r['failed'])}, refused {len(r['refused'])}; "
            f"B retransmissions {r['b_retrans']}; B ran {r['wall']:.1f} s (with {B_HOLD_MS / 1000:g} s "
            f"holding the last call), sipp rc {r['rc']}")


def lat_line(label, xs, unit_us=True):
    if not xs:
        return f"{label}: no samples"
    f = (lambda v: f"{v:.0f} us") if unit_us else (lambda v: f"{v * 1000:.0f} us")
    return (f"{label}: median {f(median(xs))}, p99 {f(pct(xs, 99))}, max {f(max(xs))} "
            f"({len(xs)} moves)")


def main():
    for p, what in ((QRXFERD, "qrxferd"), (os.path.join(MODDIR, MODULE), "module")):
        if not os.path.exists(p):
            sys.exit(f"bench-move: {what} {p} not built (run make first)")
    scratch = tempfile.mkdtemp(prefix="qrx-bench-move.")
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    load0 = os.getloadavg()
    up0 = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    log(f"qrxfer bench-move ({'QUICK, ' if QUICK else ''}{CALLS} calls up, rates {RATES} moves/s,"
        f" {STEP_S:g} s each, B dials {'sip:m.<token>@' if KEY == 'token' else 'sip:*88<code>@'})")
    log(f"machine: nproc {os.cpu_count()}, shared by qrxferd AND the three SIPp instances "
        f"(A, B, C) AND the code-creating client; uptime: {up0}")
    log(f"qrxferd {QRXFERD} ({MODULE}, log level info, SQLite in {scratch}); {SIPP}")
    out = {"steps": []}
    daemon = a = c = None
    try:
        c_dir = os.path.join(scratch, "c")
        os.makedirs(c_dir)
        c_port = free_port(1)
        c = spawn([SIPP, "-sf", os.path.join(HERE, "move-c.xml"), "-p", str(c_port),
                   "-mp", str(free_port(4)), "-m", str(CALLS), "-max_socket", max_socket(),
                   "-stf", os.path.join(c_dir, "c.csv"), "-trace_err", "-error_file",
                   os.path.join(c_dir, "c.err"), "-timeout", f"{int(left_s())}s"] + SIPP_COMMON,
                  os.path.join(c_dir, "c.out"), c_dir)
        time.sleep(0.5)
        ddir = os.path.join(scratch, "qrxferd")
        os.makedirs(ddir)
        daemon = Daemon(ddir, free_port(1), free_port(1), c_port)
        log(f"[calls] A places {CALLS} calls at {CALL_RATE}/s through qrxferd to C and holds them")
        a, a_dir, up, fill, acked = fill_calls(scratch, daemon, c_port)
        log(f"[calls] {acked} calls answered in {fill:.1f} s; qrxferd lists {len(up)} answered")
        out["up"] = len(up)
        if len(up) < CALLS:
            findings.append(f"only {len(up)} of {CALLS} calls came up (see {a_dir})")
        random.shuffle(up)
        pending = list(up)
        perf = perf_start(daemon.proc.pid, ddir) if PERF else None
        cap = pcap_start(daemon.port, ddir) if PCAP else None
        codes_lat, codes_wall, codes_n, codes_err = [], 0.0, 0, []
        for rate in RATES:
            n = min(int(rate * STEP_S), len(pending))
            if n < 1 or left_s() < 120:
                log(f"[move] {rate}/s: not run ({len(pending)} calls left, {left_s():.0f} s left)")
                break
            calls, pending = pending[:n], pending[n:]
            codes, lat, wall, errs = create_codes(daemon, calls)
            codes_lat += lat
            codes_wall += wall
            codes_n += len(calls)
            codes_err += errs
            good = [x for x in codes if x]
            log(f"[codes] {len(good)}/{n} codes created over {CONNS} keep-alive connections in "
                f"{wall:.2f} s ({len(good) / wall:.0f}/s); request time median "
                f"{median(lat) * 1000:.1f} ms, p99 {pct(lat, 99) * 1000:.1f} ms"
                + (f"; {len(errs)} errors, first: {errs[0]}" if errs else ""))
            if not good:
                findings.append(f"no code could be created (first error: {errs[:1]})")
                break
            r = b_step(scratch, daemon, rate, good, a_dir, c_dir)
            r["asked"] = n
            out["steps"].append(r)
            log(f"[move] {rate}/s x {r['n']}: {'PASS' if r['pass'] else 'FAIL'}: {describe(r)}")
            if r["span"]:
                log(f"[move]   done lines span {r['span']:.2f} s: "
                    f"{len(r['done']) / r['span']:.0f} complete moves/s; qrxferd CPU "
                    f"{r['cpu'] or 0:.2f} s ({(r['cpu'] or 0) * 1e6 / max(1, r['complete']):.0f} us"
                    f" per move, SIP and store work of the B traffic only)")
            us1 = [x[0] for x in r["done"]]
            us2 = [x[1] for x in r["done"]]
            log("[move]   " + lat_line("B's INVITE -> re-INVITE to C (daemon)", us1))
            log("[move]   " + lat_line("B's INVITE -> 200 to B (daemon)", us2))
            log("[move]   " + lat_line("INVITE sent -> 200 received (SIPp B)", r["rtt"], False))
            if r["failed"]:
                log(f"[move]   first daemon failure: {r['failed'][0]}")
            if r["b_ok"] and not r["done"]:
                log("[move]   no completion line in the daemon's log: has its format changed? "
                    "(bench/move.py, DONE)")
            if not r["on_time"]:
                log(f"[move]   the done lines span {r['span'] or 0:.1f} s for ~{r['n'] / rate:.1f} s"
                    f" of calls: the rate was not kept")
            if not r["pass"]:
                break
        if perf:
            perf_report(perf, ddir)
        if cap:
            path, dropped = pcap_stop(cap, ddir)
            out["wire"] = pcap_moves(path, daemon.port)
            out["wire_dropped"] = dropped
        out["codes"] = (codes_n, codes_wall, codes_lat, codes_err)
        # End: qrxferd ends every call it holds (C answers its BYEs), then exits.
        qrc = stop(daemon.proc, signal.SIGTERM, 60)
        if qrc != 0:
            what = "had to be killed 60 s after SIGTERM" if qrc is None else f"exited {qrc}"
            findings.append(f"qrxferd {what} on SIGTERM with {len(pending)} + moved calls up "
                            f"(log {daemon.logpath})")
    except RuntimeError as e:
        log(f"bench-move: {e}")
        findings.append(str(e))
    finally:
        cleanup()

    load1 = os.getloadavg()
    up1 = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    steps = out["steps"]
    log("")
    log("==== qrxfer bench-move results ====")
    log(f"machine: nproc {os.cpu_count()}; qrxferd, SIPp A, B and C and the HTTP client all share "
        f"them; load average {load0[0]:.2f} at start, {load1[0]:.2f} at end "
        f"({(time.monotonic() - T0) / 60:.1f} min); uptime at end: {up1}")
    log(f"calls up while moving: {out.get('up', 0)} (asked {CALLS}), UDP on 127.0.0.1, SQLite store")
    if "codes" in out and out["codes"][0]:
        n, wall, lat, errs = out["codes"]
        log(f"code creation (POST /v1/calls/{{id}}/moves, {CONNS} keep-alive connections): {n} codes "
            f"in {wall:.1f} s = {n / wall:.0f} codes/s; request median {median(lat) * 1000:.1f} ms, "
            f"p99 {pct(lat, 99) * 1000:.1f} ms; {len(errs)} errors")
    passed = [r for r in steps if r["pass"]]
    best = max((r["rate"] for r in passed), default=None)
    tot_done = sum(len(r["done"]) for r in steps)
    tot_span = sum(r["span"] or 0 for r in steps)
    tot_b = sum(r["wall"] for r in steps)
    tot_fail = sum(r["fails"] for r in steps)
    for r in steps:
        log(f"  {r['rate']:>5}/s x {r['n']}: {'PASS' if r['pass'] else 'FAIL'} "
            f"{r['complete']} complete, {r['fails']} failures"
            + (f", {len(r['done']) / r['span']:.0f} moves/s measured" if r["span"] else ""))
    log(f"highest rate with 0 failed moves ({STEP_S:g} s at each rate): "
        f"{best if best else 'none of the rates tried'} moves/s   (goal >= {GOAL_MOVES}: "
        f"{'met' if best and best >= GOAL_MOVES else 'NOT met'})")
    if tot_span:
        log(f"over the run: {tot_done} moves done in {tot_span:.1f} s of move traffic = "
            f"{tot_done / tot_span:.0f} moves/s ({tot_b:.1f} s counting each B SIPp from start "
            f"to exit, less its {B_HOLD_MS / 1000:g} s hold: "
            f"{tot_done / max(0.1, tot_b - len(steps) * B_HOLD_MS / 1000):.0f}/s); "
            f"{tot_fail} failures")
    us1 = [x[0] for r in passed for x in r["done"]]
    us2 = [x[1] for r in passed for x in r["done"]]
    rtt = [x for r in passed for x in r["rtt"]]
    log("added latency, over the steps that passed (daemon's own clock: from its INVITE "
        "callback for B to the re-INVITE handed to sofia-sip, and to C's answer, which is when "
        "it answers B):")
    for label, xs in (("  B's INVITE -> re-INVITE to C", us1), ("  B's INVITE -> 200 OK to B", us2)):
        if xs:
            log(f"{label}: median {median(xs):.0f} us, p99 {pct(xs, 99):.0f} us   "
                f"(goal < {GOAL_MEDIAN_US} us median, < {GOAL_P99_US} us p99: "
                f"{'met' if median(xs) < GOAL_MEDIAN_US and pct(xs, 99) < GOAL_P99_US else 'NOT met'})")
    if us2:
        log(f"  means: INVITE -> re-INVITE {sum(us1) / len(us1):.0f} us, INVITE -> 200 "
            f"{sum(us2) / len(us2):.0f} us")
    if rtt:
        log(f"  cross-check, SIPp B's response time INVITE sent -> 200 received (with SIPp's own "
            f"overhead, the kernel and C's turnaround): median {median(rtt) * 1000:.0f} us, p99 "
            f"{pct(rtt, 99) * 1000:.0f} us, mean {sum(rtt) / len(rtt) * 1000:.0f} us. SIPp reads "
            f"a coarse clock (steps of {min([x for x in rtt if x > 0], default=0):g} ms here), so "
            f"its median and p99 are rounded to those steps; its mean is not biased by them")
    wire = out.get("wire")
    if wire:
        ok_ids = set()
        w1 = [v[0] * 1e6 for v in wire.values()]
        w2 = [v[1] * 1e6 for v in wire.values()]
        w3 = [v[2] * 1e6 for v in wire.values()]
        log(f"  on the wire (tcpdump on lo, all steps, {len(wire)} moves paired, "
            f"{out.get('wire_dropped')} packets dropped by the kernel):")
        log(f"    B's INVITE in -> re-INVITE out to C: median {median(w1):.0f} us, p99 "
            f"{pct(w1, 99):.0f} us, mean {sum(w1) / len(w1):.0f} us")
        log(f"    B's INVITE in -> 200 out to B: median {median(w2):.0f} us, p99 {pct(w2, 99):.0f} us,"
            f" mean {sum(w2) / len(w2):.0f} us (holds C's turnaround)")
        log(f"    qrxferd's own share (INVITE in -> re-INVITE out, plus C's 200 in -> 200 out): "
            f"median {median(w3):.0f} us, p99 {pct(w3, 99):.0f} us, mean {sum(w3) / len(w3):.0f} us")
    elif PCAP:
        log("  on the wire: no moves paired in the capture")
    if passed:
        top = passed[-1]
        log(f"  at the highest passing rate ({top['rate']}/s): "
            + lat_line("daemon INVITE -> 200", [x[1] for x in top["done"]]) + "; "
            + lat_line("SIPp", top["rtt"], False))
    for f in findings:
        log(f"daemon finding: {f}")
    if os.environ.get("BENCH_KEEP") or findings or not passed:
        log(f"logs kept in {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if findings else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        cleanup()
