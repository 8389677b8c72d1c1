#!/usr/bin/env python3
"""qrxfer guessing benchmark: how many numeric codes can a stranger check per minute against
qrxferd's guess limits, and what does that make the expected time to a first success.
Run through `make bench-guess` (bench/guess.sh); see bench/README.md.

What runs, all on loopback over UDP:
  A  sipp -sf move-a.xml  ->  qrxferd  ->  C  sipp -sf move-c.xml   (BENCH_GUESS_CALLS calls, held)
  codes: POST /v1/calls/{id}/moves over the admin API, one per call: that many numeric codes
         on offer
  guesser: this script, a raw UDP sender: INVITE sip:*88<8 random digits>@<domain> from a pool
         of sockets on 127.0.0.2 .. 127.0.0.50 (BENCH_GUESS_ADDRS addresses, BENCH_GUESS_SOCKS
         sockets = source ports each), as fast as qrxferd answers (at most BENCH_GUESS_WINDOW
         INVITEs unanswered at a time), for BENCH_GUESS_S seconds. Every final response is
         ACKed; a 2xx would be a success: ACKed, hung up with BYE and counted.
qrxferd runs with the shipped defaults for the limits ([codes] max_failures 5 per address in
10 min, lockout 60 s, numeric_budget 30 per budget_window 60 s) and log level info.

Prints per run: guesses sent, finals by status (404 checked and wrong, 480 source locked, 503
budget spent, 2xx got through), unanswered; checked guesses (404s) per minute and the most in
any budget window (the client's clock, and the daemon's own: the failures it stored) against
the budget; successes (goal 0); the expected time to a first success at the checked rate with
the codes on offer and 8 digits; qrxferd's CPU during the guessing; UDP datagrams the kernel
dropped at qrxferd's socket. After the guessing (BENCH_GUESS_PROBE=1): one right numeric code
and one right token from a clean address (127.0.0.1), to show what the budget costs the
legitimate user and that tokens still work.

Environment (defaults in brackets):
  QRXFERD, QRXFER_MODULE_DIR, QRXFER_MODULE  the daemon [$top_builddir/qrxferd, .libs, mod_qrxfer.so]
  SIPP                  [from PATH]
  BENCH_GUESS_S         seconds of guessing [60]
  BENCH_GUESS_RUNS      runs, each with a fresh qrxferd; more than one: the median too [1]
  BENCH_GUESS_CALLS     calls up, one code on each [100]
  BENCH_GUESS_ADDRS     source addresses, 127.0.0.2 on [49: up to 127.0.0.50]
  BENCH_GUESS_SOCKS     sockets (source ports) per address [4]
  BENCH_GUESS_WINDOW    INVITEs unanswered at most [300: more only queues them at qrxferd,
                        whose 500 ms timer then repeats its finals before our ACKs are read]
  BENCH_GUESS_TIMEOUT   seconds after which an unanswered INVITE is given up [8]
  BENCH_GUESS_PROBE     1: the two probes after the guessing [1]
  BENCH_KEEP            keep the scratch folders (logs, SIPp files, the store)
"""
import collections
import errno
import json
import math
import os
import random
import selectors
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

import move
from benchlib import cleanup, env_int, free_port, sip_ping, spawn, stop, udp_drops
from move import Api, cpu_s, max_socket, median, SIPP_COMMON

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_BUILD = os.environ.get("top_builddir") or os.getcwd()

GUESS_S = float(os.environ.get("BENCH_GUESS_S", "") or 60)
RUNS = env_int("BENCH_GUESS_RUNS", 1)
CALLS = env_int("BENCH_GUESS_CALLS", 100)
NADDRS = max(1, min(49, env_int("BENCH_GUESS_ADDRS", 49)))
SOCKS = max(1, env_int("BENCH_GUESS_SOCKS", 4))
WINDOW = max(1, env_int("BENCH_GUESS_WINDOW", 300))
TIMEOUT_S = float(os.environ.get("BENCH_GUESS_TIMEOUT", "") or 8)
PROBE = os.environ.get("BENCH_GUESS_PROBE", "1") not in ("", "0")
QRXFERD = os.environ.get("QRXFERD") or os.path.join(TOP_BUILD, "qrxferd")
MODDIR = os.environ.get("QRXFER_MODULE_DIR") or os.path.join(TOP_BUILD, ".libs")
MODULE = os.environ.get("QRXFER_MODULE") or "mod_qrxfer.so"
SIPP = os.environ.get("SIPP") or shutil.which("sipp") or "sipp"
DOMAIN = "qrxfer.test"
DIGITS = 8  # [codes] digits, the default
# the shipped defaults of the limits (etc/qrxfer.conf); the bench does not set them
MAX_FAILURES, LOCKOUT_S, BUDGET, BUDGET_WINDOW_S, DEFAULT_TTL = 5, 60, 30, 60, 120
DRAIN_S = 10.0  # after the guessing: how long to wait for the last answers

findings = []


def log(msg):
    print(msg, flush=True)


def fmt_dur(minutes):
    if minutes == float("inf"):
        return "never"
    if minutes < 120:
        return f"{minutes:.1f} min"
    if minutes < 2 * 1440:
        return f"{minutes / 60:.1f} h"
    if minutes < 730 * 1440:
        return f"{minutes / 1440:.1f} days"
    return f"{minutes / 525960:.1f} years"


def max_in_window(ts, w):
    """The most of the sorted times ts inside any window (t - w, t]."""
    best, j = 0, 0
    for i, t in enumerate(ts):
        while ts[j] <= t - w:
            j += 1
        best = max(best, i - j + 1)
    return best


class Daemon:
    """qrxferd on 127.0.0.1 with a scratch config: the limits are left at their defaults."""

    def __init__(self, d, sip_port, http_port, c_port, ttl):
        self.d, self.port, self.http = d, sip_port, http_port
        self.logpath = os.path.join(d, "qrxferd.log")
        self.db = os.path.join(d, "qrxfer.db")
        self.token = "bench-guess-%016x" % random.getrandbits(64)
        tok = os.path.join(d, "admin.token")
        with open(tok, "w") as f:
            f.write(self.token + "\n")
        conf = os.path.join(d, "qrxfer.conf")
        with open(conf, "w") as f:
            f.write(
                f"[module]\nload = {MODULE}\n[log]\nlevel = info\n"
                f"[sip]\nlisten = sip:127.0.0.1:{sip_port}\ndomain = {DOMAIN}\n"
                f"upstream = sip:127.0.0.1:{c_port}\n"
                f"[http]\nlisten = 127.0.0.1:{http_port}\nadmin_token_file = {tok}\n"
                f"[store]\nurl = sqlite://{self.db}\n"
                f"[codes]\nhmac_key_file = {d}/hmac.key\n"
                + (f"ttl = {ttl}\n" if ttl != DEFAULT_TTL else "")
            )
        self.proc = spawn([QRXFERD, "-c", conf, "-M", MODDIR], self.logpath, d)
        if not sip_ping(sip_port, 15):
            raise RuntimeError(f"qrxferd not answering OPTIONS on 127.0.0.1:{sip_port} "
                               f"(exit status {self.proc.poll()}); see {self.logpath}")

    def log_text(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")


def create_codes(daemon, call_ids):
    """One move per call; [(move id, token, code)] for those created, and the errors."""
    api = Api(daemon.http, daemon.token)
    out, errs = [], []
    try:
        for cid in call_ids:
            deadline = time.monotonic() + 5
            while True:
                st, body = api.call("POST", f"/v1/calls/{cid}/moves")
                if st != 429 or time.monotonic() > deadline:  # 429: its ACK is on the way
                    break
                time.sleep(0.05)
            if st != 201:
                errs.append(f"{st} {body[:160]!r}")
                continue
            m = json.loads(body)
            token = m["qr_uri"].split(":", 1)[1].split("@")[0]  # m.<TOKEN>
            out.append((m["id"], token, str(m["code"])))
    finally:
        api.close()
    return out, errs


def offered_count(daemon, ids):
    api = Api(daemon.http, daemon.token)
    n = 0
    try:
        for mid in ids:
            st, body = api.call("GET", f"/v1/moves/{mid}")
            if st == 200 and json.loads(body).get("state") == "offered":
                n += 1
    finally:
        api.close()
    return n


def parse(data):
    """(status or None, request method or None, headers lower-cased: first value)."""
    head = data.split("\r\n\r\n", 1)[0].split("\r\n")
    first = head[0]
    status = method = None
    if first.startswith("SIP/2.0 "):
        try:
            status = int(first[8:11])
        except ValueError:
            pass
    else:
        method = first.split(" ", 1)[0]
    h = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        k = k.strip().lower()
        k = {"i": "call-id", "t": "to", "f": "from", "m": "contact", "v": "via"}.get(k, k)
        h.setdefault(k, v.strip())
    return status, method, h


def contact_uri(v):
    if "<" in v:
        return v[v.index("<") + 1:v.index(">")]
    return v.split(";")[0].strip()


class Guesser:
    """INVITEs from a pool of sockets; transactions matched by Call-ID."""

    def __init__(self, target_port, addrs, socks_per_addr, live=()):
        self.live = set("*88" + c for c in live)  # the codes on offer, as dialled
        self.hit_status = collections.Counter()  # guesses that named one: their answers
        self.wall404 = []
        self.target = ("127.0.0.1", target_port)
        self.sel = selectors.DefaultSelector()
        self.socks = []
        for a in addrs:
            for _ in range(socks_per_addr):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                s.bind((a, 0))
                s.setblocking(False)
                self.socks.append((s, a, s.getsockname()[1]))
                self.sel.register(s, selectors.EVENT_READ, len(self.socks) - 1)
        self.inflight = {}  # call-id -> [sock index, branch, ruri, t sent, digits]
        self.done = {}      # call-id -> (sock index, branch, ruri, status) recently finished
        self.done_q = collections.deque()
        self.n = 0
        self.sent = 0
        self.send_errors = collections.Counter()
        self.finals = collections.Counter()
        self.provisional = 0
        self.retrans_finals = 0
        self.unanswered = 0
        self.t_status = collections.defaultdict(list)  # status -> monotonic times
        self.retry_after = collections.defaultdict(list)
        self.by_addr = collections.defaultdict(collections.Counter)
        self.rtt = []
        self.successes = []  # (digits or key, status)
        self.byes = {}       # call-id -> [sock index, msg, t, tries]
        self.bye_ok = 0
        self.stray = 0

    def close(self):
        for s, _, _ in self.socks:
            self.sel.unregister(s)
            s.close()
        self.sel.close()

    def _send(self, i, msg):
        s = self.socks[i][0]
        try:
            s.sendto(msg, self.target)
            return True
        except OSError as e:
            self.send_errors[errno.errorcode.get(e.errno, str(e.errno))] += 1
            return False

    def invite(self, user, i=None, tag="g"):
        """INVITE sip:<user>@DOMAIN from socket i (next in turn when None); its Call-ID."""
        if i is None:
            i = self.n % len(self.socks)
        self.n += 1
        _, src, me = self.socks[i]
        ruri = f"sip:{user}@{DOMAIN}"
        n = self.n
        branch = f"z9hG4bK-{tag}{n}-{me}"
        callid = f"{tag}{n}-{me}@{src}"
        sdp = (f"v=0\r\no=g {n} 1 IN IP4 {src}\r\ns=-\r\nc=IN IP4 {src}\r\nt=0 0\r\n"
               f"m=audio 40002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
        msg = (f"INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {src}:{me};branch={branch};rport\r\n"
               f"Max-Forwards: 70\r\nFrom: <sip:guess@{src}>;tag={tag}{n}\r\nTo: <{ruri}>\r\n"
               f"Call-ID: {callid}\r\nCSeq: 1 INVITE\r\nContact: <sip:guess@{src}:{me}>\r\n"
               f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}")
        if self._send(i, msg.encode()):
            self.sent += 1
            self.inflight[callid] = [i, branch, ruri, time.monotonic(), user, tag + str(n)]
            return callid
        return None

    def _ack(self, i, callid, branch, ruri, ftag, to, status, h):
        _, src, me = self.socks[i]
        if status >= 300:
            target, b = ruri, branch
        else:
            target, b = contact_uri(h.get("contact", f"<{ruri}>")), branch + "-ack"
        ack = (f"ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {src}:{me};branch={b};rport\r\n"
               f"Max-Forwards: 70\r\nFrom: <sip:guess@{src}>;tag={ftag}\r\nTo: {to}\r\n"
               f"Call-ID: {callid}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n")
        self._send(i, ack.encode())

    def _bye(self, i, callid, ftag, to, h, ruri):
        _, src, me = self.socks[i]
        target = contact_uri(h.get("contact", f"<{ruri}>"))
        routes = ""
        if "record-route" in h:  # a B2BUA does not record-route; kept simple: one route set
            routes = f"Route: {h['record-route']}\r\n"
        bye = (f"BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {src}:{me};branch=z9hG4bK-bye-"
               f"{callid.split('@')[0]};rport\r\nMax-Forwards: 70\r\n{routes}"
               f"From: <sip:guess@{src}>;tag={ftag}\r\nTo: {to}\r\nCall-ID: {callid}\r\n"
               f"CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n").encode()
        self.byes[callid] = [i, bye, time.monotonic(), 1]
        self._send(i, bye)

    def _handle(self, i, data, now):
        status, method, h = parse(data)
        callid = h.get("call-id", "")
        cseq = h.get("cseq", "")
        if method is not None:
            # a request to us (a BYE for a call that got through, an OPTIONS): answer 200
            _, src, me = self.socks[i]
            head = [f"Via: {v}" for v in [h.get("via", "")]]
            resp = (f"SIP/2.0 200 OK\r\n{head[0]}\r\nFrom: {h.get('from', '')}\r\n"
                    f"To: {h.get('to', '')}\r\nCall-ID: {callid}\r\nCSeq: {cseq}\r\n"
                    f"Content-Length: 0\r\n\r\n")
            if method != "ACK":
                self._send(i, resp.encode())
            self.stray += 1
            return
        if status is None:
            return
        if cseq.endswith("BYE"):
            if status >= 200 and self.byes.pop(callid, None):
                self.bye_ok += 1
            return
        t = self.inflight.get(callid)
        if t is None:
            d = self.done.get(callid)
            if d and status >= 200:  # a final repeated: our ACK was lost; ACK again
                self.retrans_finals += 1
                self._ack(d[0], callid, d[1], d[2], d[3], h.get("to", ""), status, h)
            return
        if status < 200:
            self.provisional += 1
            return
        si, branch, ruri, t0, user, ftag = t
        del self.inflight[callid]
        self.finals[status] += 1
        self.t_status[status].append(now)
        if status == 404:
            self.wall404.append(time.time())
        if user in self.live:
            self.hit_status[status] += 1
        self.by_addr[self.socks[si][1]][status] += 1
        self.rtt.append(now - t0)
        ra = h.get("retry-after")
        if ra:
            try:
                self.retry_after[status].append(int(ra.split(";")[0].split("(")[0].strip()))
            except ValueError:
                pass
        self.done[callid] = (si, branch, ruri, ftag)
        self.done_q.append((now, callid))
        self._ack(si, callid, branch, ruri, ftag, h.get("to", ""), status, h)
        if 200 <= status < 300:
            self.successes.append((user, status))
            self._bye(si, callid, ftag, h.get("to", ""), h, ruri)

    def poll(self, timeout):
        for key, _ in self.sel.select(timeout):
            s = key.fileobj
            for _ in range(256):
                try:
                    data = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                self._handle(key.data, data.decode("latin-1"), time.monotonic())

    def expire(self, now):
        while self.done_q and self.done_q[0][0] < now - 40:
            _, cid = self.done_q.popleft()
            self.done.pop(cid, None)
        old = [cid for cid, t in self.inflight.items() if t[3] < now - TIMEOUT_S]
        for cid in old:
            del self.inflight[cid]
            self.unanswered += 1
        for cid, b in list(self.byes.items()):
            if now - b[2] > 0.5 * b[3]:
                if b[3] >= 6:
                    del self.byes[cid]
                    continue
                b[3] += 1
                self._send(b[0], b[1])


def run_guessing(g, guess_s):
    """Random 8-digit codes as fast as answered, for guess_s seconds, then a drain."""
    rnd = random.SystemRandom()
    t0 = time.monotonic()
    t_end = t0 + guess_s
    last_exp = t0
    guesses = []
    while True:
        now = time.monotonic()
        if now >= t_end:
            break
        k = 0
        while len(g.inflight) < WINDOW and k < 64:
            digits = "%0*d" % (DIGITS, rnd.randrange(10 ** DIGITS))
            if g.invite("*88" + digits):
                guesses.append(digits)
            k += 1
        g.poll(0 if len(g.inflight) < WINDOW else 0.02)
        if now - last_exp > 0.25:
            g.expire(now)
            last_exp = now
    t_stop = time.monotonic()
    while (g.inflight or g.byes) and time.monotonic() < t_stop + DRAIN_S:
        g.poll(0.05)
        g.expire(time.monotonic())
    t_drained = time.monotonic()
    g.unanswered += len(g.inflight)
    g.inflight.clear()
    return t0, t_stop, t_drained, guesses


def probe(g, user, secs=10):
    """One INVITE to sip:<user>@ from 127.0.0.1 (socket 0 of a separate guesser); status."""
    before = dict(g.finals)
    cid = g.invite(user, 0, tag="p")
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline and (cid in g.inflight or cid in g.byes):
        g.poll(0.05)
        g.expire(time.monotonic())
    for st, n in g.finals.items():
        if n > before.get(st, 0):
            return st, (g.retry_after.get(st) or [None])[-1]
    return None, None


def store_failures(db):
    """The daemon's own record: times (s) of the wrong numeric codes it stored, by source."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        rows = con.execute("SELECT at, source, kind FROM failures ORDER BY at").fetchall()
        con.close()
    except sqlite3.Error as e:
        findings.append(f"cannot read the failures table of {db}: {e}")
        return None
    return rows


def one_run(k, scratch):
    """One run with a fresh qrxferd; a dict of figures."""
    ttl = DEFAULT_TTL if GUESS_S + 60 <= DEFAULT_TTL else int(GUESS_S + 120)
    r = {"ttl": ttl}
    move.T0 = time.monotonic()
    move.RUN_BOUND_S = int(GUESS_S + 400)
    move.CALLS, move.CALL_RATE = CALLS, min(200, CALLS)
    c_dir = os.path.join(scratch, "c")
    os.makedirs(c_dir)
    c_port = free_port(1)
    spawn([SIPP, "-sf", os.path.join(HERE, "move-c.xml"), "-p", str(c_port),
           "-mp", str(free_port(4)), "-m", str(CALLS), "-max_socket", max_socket(),
           "-stf", os.path.join(c_dir, "c.csv"), "-trace_err", "-error_file",
           os.path.join(c_dir, "c.err"), "-timeout", f"{int(move.left_s())}s"] + SIPP_COMMON,
          os.path.join(c_dir, "c.out"), c_dir)
    time.sleep(0.5)
    ddir = os.path.join(scratch, "qrxferd")
    os.makedirs(ddir)
    daemon = Daemon(ddir, free_port(1), free_port(1), c_port, ttl)
    r["daemon"] = daemon
    a, a_dir, up, fill, acked = move.fill_calls(scratch, daemon, c_port)
    log(f"[run {k}] {acked} calls answered in {fill:.1f} s; qrxferd lists {len(up)} answered")
    if len(up) < CALLS:
        findings.append(f"run {k}: only {len(up)} of {CALLS} calls came up (see {a_dir})")
    t = time.monotonic()
    moves, errs = create_codes(daemon, up)
    log(f"[run {k}] {len(moves)} codes created in {time.monotonic() - t:.1f} s"
        + (f"; {len(errs)} errors, first: {errs[0]}" if errs else ""))
    if errs:
        findings.append(f"run {k}: {len(errs)} codes not created, first: {errs[0]}")
    codes = {c for _, _, c in moves}
    r["codes"] = len(codes)
    if not codes:
        raise RuntimeError("no code could be created")
    addrs = [f"127.0.0.{i}" for i in range(2, 2 + NADDRS)]
    g = Guesser(daemon.port, addrs, SOCKS, codes)
    drops0 = udp_drops(daemon.port)
    cpu0 = cpu_s(daemon.proc.pid)
    me0 = time.process_time()
    wall0 = time.monotonic()
    log(f"[run {k}] guessing for {GUESS_S:g} s from {len(addrs)} addresses x {SOCKS} ports "
        f"({addrs[0]} .. {addrs[-1]}), at most {WINDOW} INVITEs unanswered")
    t0, t_stop, t_drained, guesses = run_guessing(g, GUESS_S)
    cpu1 = cpu_s(daemon.proc.pid)
    me1 = time.process_time()
    wall1 = time.monotonic()
    r.update(sent=g.sent, finals=dict(g.finals), unanswered=g.unanswered,
             provisional=g.provisional, retrans_finals=g.retrans_finals,
             send_errors=dict(g.send_errors), successes=list(g.successes),
             guess_s=t_stop - t0, drain_s=t_drained - t_stop,
             cpu=(cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None,
             cpu_wall=wall1 - wall0, cpu_guesser=me1 - me0, drops=udp_drops(daemon.port) - drops0,
             hits=sum(1 for x in guesses if x in codes), hit_status=dict(g.hit_status),
             bye_ok=g.bye_ok, stray=g.stray)
    r["rtt_med"] = median(g.rtt) if g.rtt else float("nan")
    r["rtt_p99"] = move.pct(g.rtt, 99) if g.rtt else float("nan")
    t404 = sorted(x - t0 for x in g.t_status.get(404, []))
    r["w404_client"] = max_in_window(t404, BUDGET_WINDOW_S)
    r["t404"] = t404
    r["bursts"] = [t for i, t in enumerate(t404) if i == 0 or t - t404[i - 1] > 5]
    r["first"] = {st: min(ts) - t0 for st, ts in g.t_status.items()}
    r["retry_after"] = {st: (min(v), max(v)) for st, v in g.retry_after.items() if v}
    r["addr404"] = collections.Counter(c[404] for c in g.by_addr.values())
    r["addr480"] = sum(1 for c in g.by_addr.values() if c[480])
    r["wall404"] = g.wall404
    g.close()
    if PROBE:
        pg = Guesser(daemon.port, ["127.0.0.1"], 1)
        left = [m for m in moves if m[2] not in {u[3:] for u, _ in g.successes}]
        if left:
            r["probe_code"] = probe(pg, "*88" + left[0][2])
        if len(left) > 1:
            r["probe_token"] = probe(pg, left[1][1])
        r["probe_bye_ok"] = pg.bye_ok
        pg.close()
    r["offered_end"] = offered_count(daemon, [m[0] for m in moves])
    # the end: qrxferd ends every call (C and A answer its BYEs) and exits 0
    qrc = stop(daemon.proc, signal.SIGTERM, 60)
    if qrc != 0:
        findings.append(f"run {k}: qrxferd " + ("had to be killed 60 s after SIGTERM"
                                                if qrc is None else f"exited {qrc}")
                        + f" on SIGTERM (log {daemon.logpath})")
    rows = store_failures(daemon.db)
    if rows is not None:
        at = sorted(x[0] / 1000.0 for x in rows if x[2] == 1)
        r["stored_numeric"] = len(at)
        r["w404_daemon"] = max_in_window(at, BUDGET_WINDOW_S)
        r["stored_by_source"] = len({x[1] for x in rows})
        if os.environ.get("BENCH_KEEP"):
            with open(os.path.join(scratch, "guess-404.json"), "w") as f:
                json.dump({"answered_404": r["wall404"], "stored": rows}, f)
    text = daemon.log_text()
    r["log_refused"] = collections.Counter()
    for line in text.splitlines():
        if "qrxfer: move: code from " in line and " refused: " in line:
            st = line.split(" refused: ", 1)[1].split(" ", 1)[0]
            r["log_refused"][st] += 1
    r["log_lines"] = text.count("\n")
    r["log_bytes"] = len(text.encode("utf-8", "replace"))
    return r


def expected_min(rate_per_min, codes):
    """Expected minutes to a first success: 10^digits / codes checked guesses at that rate."""
    if rate_per_min <= 0 or codes <= 0:
        return float("inf")
    return (10 ** DIGITS / codes) / rate_per_min


def report(k, r):
    f = r["finals"]
    n404, n480, n503 = f.get(404, 0), f.get(480, 0), f.get(503, 0)
    n2xx = sum(v for s, v in f.items() if 200 <= s < 300)
    other = {s: v for s, v in f.items() if s not in (404, 480, 503) and not 200 <= s < 300}
    run_min = (r["guess_s"] + r["drain_s"]) / 60.0
    checked = n404 / run_min if run_min else 0.0
    r["checked_per_min"] = checked
    r["n404"] = n404
    sendrate = r["sent"] / r["guess_s"] if r["guess_s"] else 0.0
    r["sendrate"] = sendrate
    log(f"== run {k}: {r['codes']} numeric codes on offer ({DIGITS} digits), guessing "
        f"{r['guess_s']:.1f} s + {r['drain_s']:.1f} s for the last answers ==")
    log(f"  guesses sent: {r['sent']} ({sendrate:.0f}/s); answered: {sum(f.values())}; "
        f"unanswered after {TIMEOUT_S:g} s: {r['unanswered']}"
        + (f"; send errors {r['send_errors']}" if r["send_errors"] else ""))
    log(f"  answers: 404 (checked, wrong) {n404}; 480 (source locked) {n480}; 503 (budget spent) "
        f"{n503}; 2xx (got through) {n2xx}" + (f"; other {other}" if other else ""))
    log(f"  first answer of each kind after: "
        + ", ".join(f"{s} at {t:.2f} s" for s, t in sorted(r["first"].items()))
        + "; Retry-After seen: "
        + (", ".join(f"{s}: {a}..{b} s" for s, (a, b) in sorted(r["retry_after"].items()))
           or "none"))
    log(f"  answer time (INVITE sent -> final): median {r['rtt_med'] * 1000:.1f} ms, p99 "
        f"{r['rtt_p99'] * 1000:.1f} ms; 1xx seen {r['provisional']}; finals repeated (our "
        f"ACK not yet read) {r['retrans_finals']}; datagrams dropped at qrxferd's socket "
        f"{r['drops']}")
    log(f"  sources: {sum(r['addr404'].values())} addresses answered; 404s per address: "
        + ", ".join(f"{v} with {n}" for n, v in sorted(r["addr404"].items()))
        + f"; addresses that got a 480: {r['addr480']}")
    wmax = r.get("w404_daemon", r["w404_client"])
    verdict = "within" if wmax <= BUDGET else "EXCEEDS"
    by_s = collections.Counter(int(t) for t in r["t404"])
    log(f"  checked guesses (404): {n404} in {run_min * 60:.1f} s = {checked:.1f} per minute of "
        f"run; by second of the run: "
        + ", ".join(f"{sec} s: {n}" for sec, n in sorted(by_s.items())))
    log(f"  most 404s in any {BUDGET_WINDOW_S} s window: {r.get('w404_daemon', '?')} by qrxferd's "
        f"own record (the wrong numeric codes it stored: {r.get('stored_numeric', '?')}), "
        f"{r['w404_client']} by this client's clock (qrxferd keys its window to when it "
        f"queued each check; the answers come 10-100 ms later, by varying amounts); "
        f"budget {BUDGET}: {verdict}")
    short = r["guess_s"] + r["drain_s"] < BUDGET_WINDOW_S
    if checked > BUDGET * 60.0 / BUDGET_WINDOW_S and verdict == "within" and not short:
        log(f"  (more than {BUDGET} per minute of run without any window holding more: the run "
            f"holds the start of {len(r['bursts'])} window(s), each opening with a burst as the "
            f"previous window's checks leave it; over a long run this tends to {BUDGET} per "
            f"{BUDGET_WINDOW_S} s)")
    if short:
        log(f"  (the run is shorter than one budget window: {checked:.0f}/min is a burst "
            f"extrapolated, not a sustained rate; the window figure is the one to compare)")
    log(f"  successes: {n2xx} (goal 0); guesses that named a live code (by chance): {r['hits']}"
        + (f", answered {r['hit_status']}" if r["hit_status"] else ""))
    sustained = wmax * 60.0 / BUDGET_WINDOW_S
    r["sustained"] = sustained
    e1 = expected_min(sustained, r["codes"])
    e2 = expected_min(checked, r["codes"])
    e0 = expected_min(sendrate * 60, r["codes"])
    log(f"  expected time to a first success, {r['codes']} codes of {DIGITS} digits "
        f"(p = {r['codes'] / 10 ** DIGITS:.0e} per checked guess): {fmt_dur(e1)} at the "
        f"{sustained:.0f} checks per {BUDGET_WINDOW_S} s window measured (50 % chance: "
        f"{fmt_dur(e1 * math.log(2))}); "
        + ("" if short else f"{fmt_dur(e2)} at the run's {checked:.1f} per minute; ")
        + f"at the budget's {BUDGET}/min: {fmt_dur(expected_min(BUDGET, r['codes']))}; were every "
        f"guess sent checked ({sendrate * 60:.0f}/min, no limits): {fmt_dur(e0)}")
    cpu = r["cpu"]
    if cpu is not None:
        log(f"  qrxferd CPU during the guessing: {cpu:.2f} s in {r['cpu_wall']:.1f} s = "
            f"{cpu / r['cpu_wall'] * 100:.0f} % of one core, "
            f"{cpu * 1e6 / max(1, sum(f.values())):.0f} us per answered guess (the guesser "
            f"itself: {r['cpu_guesser'] / r['cpu_wall'] * 100:.0f} % of one core)")
    log(f"  qrxferd's log: {r['log_lines']} lines, {r['log_bytes'] / 1e6:.1f} MB; refusals "
        f"logged by status "
        f"{dict(r['log_refused'])}")
    if "probe_code" in r or "probe_token" in r:
        pc, pt = r.get("probe_code", (None, None)), r.get("probe_token", (None, None))
        log(f"  after the guessing, from a clean address (127.0.0.1): a right numeric code got "
            f"{pc[0]}" + (f" (Retry-After {pc[1]})" if pc[1] else "")
            + f"; a right token got {pt[0]}; calls hung up with BYE {r.get('probe_bye_ok', 0)}")
    log(f"  codes still on offer at the end: {r['offered_end']} of {r['codes']} "
        f"([codes] ttl {r['ttl']} s)")
    if n2xx:
        findings.append(f"run {k}: {n2xx} guesses got through: {r['successes'][:5]}")
    if verdict != "within":
        findings.append(f"run {k}: {r.get('w404_daemon')} wrong numeric codes checked in one "
                        f"{BUDGET_WINDOW_S} s window, budget {BUDGET}")


def main():
    for p, what in ((QRXFERD, "qrxferd"), (os.path.join(MODDIR, MODULE), "module")):
        if not os.path.exists(p):
            sys.exit(f"bench-guess: {what} {p} not built (run make first)")
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    up0 = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    log(f"qrxfer bench-guess: {RUNS} run(s) of {GUESS_S:g} s guessing, {CALLS} codes on offer, "
        f"limits at their defaults (max_failures {MAX_FAILURES} per address / 10 min, lockout "
        f"{LOCKOUT_S} s, numeric_budget {BUDGET} per {BUDGET_WINDOW_S} s)")
    log(f"machine: nproc {os.cpu_count()}, shared by qrxferd, SIPp A and C and the guesser; "
        f"uptime: {up0}")
    log(f"qrxferd {QRXFERD} ({MODULE}, log level info, SQLite store); {SIPP}")
    results, scratches = [], []
    for k in range(1, RUNS + 1):
        scratch = tempfile.mkdtemp(prefix="qrx-bench-guess.")
        scratches.append(scratch)
        try:
            r = one_run(k, scratch)
            report(k, r)
            results.append(r)
        except RuntimeError as e:
            log(f"bench-guess: run {k}: {e}")
            findings.append(f"run {k}: {e}")
        finally:
            cleanup()
    if len(results) > 1:
        def med(key):
            return median([r[key] for r in results])
        log(f"== median of {len(results)} runs: sent {med('sent'):.0f} ({med('sendrate'):.0f}/s); "
            f"404 {med('n404'):.0f} = {med('checked_per_min'):.1f} checked/min; most 404s in one "
            f"window (daemon) {median([r.get('w404_daemon', -1) for r in results])}; "
            f"successes {median([len(r['successes']) for r in results])}; qrxferd CPU "
            f"{median([r['cpu'] or 0 for r in results]):.2f} s; expected time to a first "
            f"success at the median checked rate: "
            f"{fmt_dur(expected_min(med('checked_per_min'), CALLS))}, at the median checks per "
            f"window: {fmt_dur(expected_min(med('sustained'), CALLS))}")
    up1 = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    log(f"uptime at end: {up1}")
    for f in findings:
        log(f"finding: {f}")
    if os.environ.get("BENCH_KEEP") or findings:
        log("logs kept in " + " ".join(scratches))
    else:
        for s in scratches:
            shutil.rmtree(s, ignore_errors=True)
    return 1 if findings or not results else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        cleanup()
