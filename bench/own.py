#!/usr/bin/env python3
"""qrxfer own-devices benchmark (issue 13). Run through `make bench-own`; see bench/README.md.

What runs, all on 127.0.0.1 over UDP, with Kamailio (bench/own-pbx.cfg) as the PBX: a
registrar for what qrxferd relays, and a proxy to C (SIPp, bench/move-c.xml) for the calls.
  1. REGISTERs: SIPp (bench/own-reg.xml, one new user each) -> qrxferd (Path, binding kept in
     the store) -> Kamailio, at each rate of BENCH_OWN_REG_RATES for BENCH_OWN_REG_S seconds,
     BENCH_OWN_RUNS times: REGISTERs answered 200, lost (sent, not answered 200), bindings in
     the store afterwards (missing = answered but not stored), qrxferd CPU per REGISTER.
  2. Memory per binding: qrxferd's RSS and the store's bytes (SQLite file + WAL) before and
     after every binding of step 1.
  3. BENCH_OWN_CALLS calls up (SIPp A, bench/own-a.xml, alice<n> -> C), then sequentially:
     BENCH_OWN_PULLS pulls (a raw device registers as alice<n> and dials *11 with an offer:
     INVITE -> 200 on the wire at the device, and qrxferd's own "redeem to answer" from its
     "moved" line: INVITE in -> C's answer to the re-INVITE -> 200 out) and BENCH_OWN_PUSHES
     pushes (POST /v1/calls/{id}/moves?to=mine -> the device's INVITE without an offer, and the
     device's 200 -> its ACK carrying C's answer). Medians and p99, and the same per run.
Environment: QRXFERD, QRXFER_MODULE_DIR, QRXFER_MODULE, SIPP, KAMAILIO; BENCH_OWN_REG_RATES
[2000 3000], BENCH_OWN_REG_S [5], BENCH_OWN_RUNS [3], BENCH_OWN_CALLS [10000],
BENCH_OWN_PULLS [100], BENCH_OWN_PUSHES [100], BENCH_OWN_CALL_RATE [200: at 500/s SIPp A
kept up with only 120 calls/s on this shared machine, and half the calls ended "No ACK"],
BENCH_KEEP (keep the scratch folder).
"""
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import sys
import tempfile
import time

from benchlib import (cleanup, cpu_ticks, env_int, free_port, last_row, rss_kib, sip_ping,
                      spawn, stat_int, stop)

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_BUILD = os.environ.get("top_builddir") or os.getcwd()
QRXFERD = os.environ.get("QRXFERD") or os.path.join(TOP_BUILD, "qrxferd")
MODDIR = os.environ.get("QRXFER_MODULE_DIR") or os.path.join(TOP_BUILD, ".libs")
MODULE = os.environ.get("QRXFER_MODULE") or "mod_qrxfer.so"
SIPP = os.environ.get("SIPP") or shutil.which("sipp") or "sipp"
KAMAILIO = os.environ.get("KAMAILIO") or shutil.which("kamailio") or "kamailio"
RATES = [int(x) for x in os.environ.get("BENCH_OWN_REG_RATES", "2000 3000").split()]
REG_S = env_int("BENCH_OWN_REG_S", 5)
RUNS = env_int("BENCH_OWN_RUNS", 3)
CALLS = env_int("BENCH_OWN_CALLS", 10000)
CALL_RATE = env_int("BENCH_OWN_CALL_RATE", 200)
PULLS = env_int("BENCH_OWN_PULLS", 100)
PUSHES = env_int("BENCH_OWN_PUSHES", 100)
SIPP_COMMON = ["-i", "127.0.0.1", "-nostdin", "-t", "u1", "-trace_stat", "-fd", "1"]
TICK = os.sysconf("SC_CLK_TCK")
SDP = ("v=0\r\no=d 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 40002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def log(msg):
    print(msg, flush=True)


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))] if v else float("nan")


def med(v):
    return pct(v, 50)


class Device:
    """A registered device on a raw UDP socket: its flow is this socket."""

    def __init__(self, qport):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.port = self.s.getsockname()[1]
        self.q = ("127.0.0.1", qport)
        self.n = 0

    def send(self, text):
        self.s.sendto(text.encode(), self.q)

    def recv(self, timeout, want):
        """The next message whose first line matches want (a regexp), with its arrival time."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, None
            self.s.settimeout(left)
            try:
                data = self.s.recv(65535).decode("utf-8", "replace")
            except socket.timeout:
                return None, None
            t = time.perf_counter()
            if re.match(want, data):
                return data, t

    def hdrs(self, aor, method, ruri, extra="", body=""):
        self.n += 1
        self.cid = f"dev-{self.port}-{self.n}@127.0.0.1"
        return (f"{method} {ruri} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK-{self.port}-{self.n};rport\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:{aor}>;tag=d{self.port}{self.n}\r\n"
                f"To: <{ruri if method != 'REGISTER' else 'sip:' + aor}>\r\n"
                f"Call-ID: {self.cid}\r\nCSeq: 1 {method}\r\n"
                f"Contact: <sip:dev@127.0.0.1:{self.port}>\r\n{extra}"
                f"Content-Length: {len(body)}\r\n\r\n{body}")

    def register(self, aor):
        self.send(self.hdrs(aor, "REGISTER", "sip:qrxfer.test", "Expires: 3600\r\n"))
        data, _ = self.recv(5, r"SIP/2\.0 [2-6]\d\d .*")
        return data is not None and data.startswith("SIP/2.0 200")

    def pull(self, aor, code):
        """INVITE *11 with an offer: seconds to the 200, or None."""
        msg = self.hdrs(aor, "INVITE", f"sip:{code}@qrxfer.test",
                        "Content-Type: application/sdp\r\n", SDP)
        t0 = time.perf_counter()
        self.send(msg)
        data, t = self.recv(10, r"SIP/2\.0 [2-6]\d\d .*")
        if not data or not data.startswith("SIP/2.0 200"):
            return None, data
        to = re.search(r"^To:\s*(.*?)\r$", data, re.M).group(1)
        tgt = re.search(r"^Contact:\s*<([^>]+)>", data, re.M).group(1)
        self.send(f"ACK {tgt} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{self.port};"
                  f"branch=z9hG4bK-ack{self.port}{self.n}\r\nMax-Forwards: 70\r\n"
                  f"From: <sip:{aor}>;tag=d{self.port}{self.n}\r\nTo: {to}\r\n"
                  f"Call-ID: {self.cid}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n")
        return t - t0, data

    def answer_push(self, timeout):
        """Waits for the push's INVITE and answers it with an offer: (INVITE arrival time,
        seconds from our 200 to the ACK, the ACK carries an answer)."""
        inv, t_inv = self.recv(timeout, r"INVITE ")
        if not inv:
            return None, None, False
        vias = re.findall(r"^Via:\s*(.*?)\r$", inv, re.M)
        f = {k.lower(): v for k, v in re.findall(r"^(From|To|Call-ID|CSeq):\s*(.*?)\r$",
                                                  inv, re.M)}
        ok = ("SIP/2.0 200 OK\r\n" + "".join(f"Via: {v}\r\n" for v in vias) +
              f"From: {f['from']}\r\nTo: {f['to']};tag=dv{self.port}\r\n"
              f"Call-ID: {f['call-id']}\r\nCSeq: {f['cseq']}\r\n"
              f"Contact: <sip:dev@127.0.0.1:{self.port}>\r\nContent-Type: application/sdp\r\n"
              f"Content-Length: {len(SDP)}\r\n\r\n{SDP}")
        t0 = time.perf_counter()
        self.send(ok)
        ack, t = self.recv(10, r"ACK ")
        return t_inv, (t - t0) if ack else None, bool(ack and "m=audio" in ack)

    def close(self):
        self.s.close()


def count_bindings(db, like):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute("SELECT count(*) FROM bindings WHERE aor LIKE ?", (like,)).fetchone()[0]
    finally:
        con.close()


def store_bytes(db):
    return sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p))


def moved_lines(text):
    """move id -> (redeem to re-INVITE us, redeem to answer us) from qrxferd's moved lines."""
    out = {}
    for m in re.finditer(r"move: ([0-9a-f]{16}): moved: .*?redeem to re-INVITE (\d+) us, to "
                         r"answer (\d+) us", text):
        out[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return out


def main():
    # a timeout's SIGTERM still stops what this started (the finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    scratch = tempfile.mkdtemp(prefix="qrx-bench-own-")
    keep = os.environ.get("BENCH_KEEP")
    qport, hport, kport, cport = free_port(1), free_port(1), free_port(1), free_port(1)
    token = "bench-own-%016x" % random.getrandbits(64)
    with open(os.path.join(scratch, "admin.token"), "w") as f:
        f.write(token + "\n")
    db = os.path.join(scratch, "qrxfer.db")
    with open(os.path.join(HERE, "own-pbx.cfg")) as f:
        kcfg = f.read().replace("@PORT@", str(kport))
    with open(os.path.join(scratch, "kamailio.cfg"), "w") as f:
        f.write(kcfg)
    conf = os.path.join(scratch, "qrxfer.conf")
    with open(conf, "w") as f:
        f.write(f"[module]\nload = {MODULE}\n[log]\nlevel = info\n"
                f"[sip]\nlisten = sip:127.0.0.1:{qport}\ndomain = qrxfer.test\n"
                f"upstream = sip:127.0.0.1:{kport}\n"
                f"[http]\nlisten = 127.0.0.1:{hport}\n"
                f"admin_token_file = {scratch}/admin.token\n"
                f"[store]\nurl = sqlite://{db}\n[codes]\nhmac_key_file = {scratch}/hmac.key\n"
                f"[own]\nring_timeout = 10\n")
    status = 1
    try:
        os.makedirs(os.path.join(scratch, "kamrun"))
        spawn([KAMAILIO, "-f", os.path.join(scratch, "kamailio.cfg"), "-Y",
               os.path.join(scratch, "kamrun"), "-DD", "-E", "-m", "256"],
              os.path.join(scratch, "kamailio.log"), scratch)
        c = spawn([SIPP, "-sf", os.path.join(HERE, "own-c.xml"), "-p", str(cport), "-mp",
                   str(free_port(4)), "-max_socket", "60000", "-timeout", "900s", "-trace_err",
                   "-error_file", os.path.join(scratch, "c.err")] + SIPP_COMMON,
                  os.path.join(scratch, "c.out"), scratch)
        d = spawn([QRXFERD, "-c", conf, "-M", MODDIR], os.path.join(scratch, "qrxferd.log"),
                  scratch)
        if not sip_ping(qport, 15) or not sip_ping(kport, 15):
            raise RuntimeError("qrxferd or kamailio not answering OPTIONS")
        time.sleep(0.5)
        rss0, bytes0 = rss_kib(d.pid), store_bytes(db)

        # 1. REGISTERs relayed with the binding table kept.
        log(f"[register] {RUNS} runs of {REG_S} s at each of {RATES} REGISTERs/s, one new user each")
        reg = {}
        stored_total = 0
        for run in range(RUNS):
            for rate in RATES:
                pfx = f"r{run}x{rate}u"
                n = rate * REG_S
                rdir = os.path.join(scratch, pfx)
                os.makedirs(rdir)
                ticks0 = cpu_ticks([d.pid])
                t0 = time.monotonic()
                p = spawn([SIPP, "-sf", os.path.join(HERE, "own-reg.xml"), f"127.0.0.1:{qport}",
                           "-key", "pfx", pfx, "-p", str(free_port(1)), "-r", str(rate),
                           "-m", str(n), "-l", str(n), "-stf", os.path.join(rdir, "reg.csv"),
                           "-timeout", f"{REG_S * 4 + 30}s"] + SIPP_COMMON,
                          os.path.join(rdir, "reg.out"), rdir)
                p.wait()
                wall = time.monotonic() - t0
                time.sleep(1.0)  # the batch of binding writes lands within 50 ms
                cpu_us = (cpu_ticks([d.pid]) - ticks0) * 1e6 / TICK
                row = last_row(os.path.join(rdir, "reg.csv"))
                ok, failed = stat_int(row, "SuccessfulCall(C)"), stat_int(row, "FailedCall(C)")
                stored = count_bindings(db, pfx + "%")
                stored_total += stored
                got = (ok / wall, n - ok, ok - stored, cpu_us / max(ok, 1))
                reg.setdefault(rate, []).append(got)
                log(f"  run {run + 1} at {rate}/s: {ok} of {n} answered 200 in {wall:.1f} s "
                    f"({got[0]:.0f}/s), lost {n - ok} (failed {failed}), bindings stored "
                    f"{stored} (missing {ok - stored}), qrxferd CPU {got[3]:.0f} us a REGISTER")
        # the REGISTERs' server transactions linger 32 s (RFC 3261 timer J): wait them out
        time.sleep(35.0)
        rss1, bytes1 = rss_kib(d.pid), store_bytes(db)
        per_rss = (rss1 - rss0) * 1024.0 / max(stored_total, 1)
        per_db = (bytes1 - bytes0) / max(stored_total, 1)
        log(f"[memory] {stored_total} bindings: qrxferd RSS {rss0} -> {rss1} KiB "
            f"({per_rss:.0f} B a binding, 35 s after the last REGISTER: qrxferd keeps no binding in memory, this is SQLite's page cache and what the allocator kept), "
            f"store {bytes0 // 1024} -> {bytes1 // 1024} KiB ({per_db:.0f} B a binding)")

        # 3. Calls up, then pulls and pushes one at a time.
        adir = os.path.join(scratch, "a")
        os.makedirs(adir)
        # A call's AOR is the one registered on the flow its INVITE comes on: A's socket
        # registers alice1..alice<CALLS> first (a phone registers long before it calls).
        aport = free_port(1)
        log(f"[calls] A registers alice1..alice{CALLS} from its socket at 1000/s")
        p = spawn([SIPP, "-sf", os.path.join(HERE, "own-reg.xml"), f"127.0.0.1:{qport}",
                   "-key", "pfx", "alice", "-p", str(aport), "-r", "1000", "-m", str(CALLS),
                   "-l", str(CALLS), "-timeout", f"{CALLS // 1000 * 4 + 30}s"] + SIPP_COMMON,
                  os.path.join(adir, "reg.out"), adir)
        p.wait()
        time.sleep(1.0)
        log(f"[calls] {count_bindings(db, 'alice%')} of alice's bindings stored")
        log(f"[calls] A places {CALLS} calls at {CALL_RATE}/s through qrxferd and Kamailio to C")
        a = spawn([SIPP, "-sf", os.path.join(HERE, "own-a.xml"), f"127.0.0.1:{qport}", "-key",
                   "upport", str(cport), "-p", str(aport), "-mp", str(free_port(4)),
                   "-r", str(CALL_RATE), "-m", str(CALLS), "-l", str(CALLS), "-max_socket", "60000",
                   "-timeout", "900s"] + SIPP_COMMON, os.path.join(adir, "a.out"), adir)
        auth = {"Authorization": "Bearer " + token}
        bad = []
        conn = [None]

        def request(method, path):
            """(status, body) over a keep-alive connection, opened again once if it closed."""
            for attempt in (0, 1):
                if conn[0] is None:
                    conn[0] = http.client.HTTPConnection("127.0.0.1", hport, timeout=30)
                try:
                    conn[0].request(method, path, body=b"" if method == "POST" else None,
                                    headers=auth)
                    r = conn[0].getresponse()
                    return r.status, r.read()
                except (http.client.HTTPException, OSError):
                    conn[0].close()
                    conn[0] = None
                    if attempt:
                        raise
            return None, b""

        def call_list():
            st, body = request("GET", "/v1/calls")
            body = json.loads(body or b"{}") if st == 200 else {}
            return [x for x in body.get("calls", []) if x.get("state") == "answered"]

        deadline = time.monotonic() + CALLS / CALL_RATE + 60
        up = []
        while time.monotonic() < deadline:
            time.sleep(2)
            up = call_list()
            if len(up) >= CALLS:
                break
        log(f"[calls] {len(up)} answered calls up")
        if len(up) < CALLS:
            bad.append(f"only {len(up)} of {CALLS} calls up")
        total_bindings = count_bindings(db, "%")
        log(f"[calls] {total_bindings} bindings in the store")
        random.shuffle(up)
        aors = []
        for x in up:
            m = re.search(r"sip:(alice\d+@qrxfer\.test)", x.get("near_uri", ""))
            if m:
                aors.append((x["id"], m.group(1)))
        pulls, pulls_own, pushes_ring, pushes_ans, pushes_own = [], [], [], [], []
        off = os.path.getsize(os.path.join(scratch, "qrxferd.log"))
        # Every device registers first (a phone registers long before it pulls): a pull or
        # push then does not wait for its own binding's commit.
        devs = []
        for cid, aor in aors[:PULLS + PUSHES]:
            dev = Device(qport)
            if dev.register(aor):
                devs.append((cid, aor, dev))
            else:
                bad.append(f"REGISTER {aor} refused")
                dev.close()
        time.sleep(1.0)
        pushed = []
        for i, (cid, aor, dev) in enumerate(devs):
            if i < PULLS:
                dt, resp = dev.pull(aor, "*11")
                if dt is None:
                    bad.append(f"pull {aor}: {resp.splitlines()[0] if resp else 'no answer'}")
                else:
                    pulls.append(dt * 1e6)
                continue
            request("GET", "/metrics")  # the connection is open and warm before the clock starts
            t0 = time.perf_counter()
            st, body = request("POST", f"/v1/calls/{cid}/moves?to=mine")
            if st != 201:
                bad.append(f"push {cid}: {st} {body[:80]}")
                continue
            pushed.append(json.loads(body)["id"])
            t_inv, dt, answered = dev.answer_push(10)
            if t_inv is None or dt is None or not answered:
                bad.append(f"push {cid}: INVITE {t_inv is not None}, ACK with answer {answered}")
            else:
                pushes_ring.append((t_inv - t0) * 1e6)
                pushes_ans.append(dt * 1e6)
        for _, _, dev in devs:
            dev.close()
        time.sleep(1.0)
        with open(os.path.join(scratch, "qrxferd.log"), "rb") as f:
            f.seek(off)
            lines = moved_lines(f.read().decode("utf-8", "replace"))
        for mid, (_, ans) in lines.items():
            (pushes_own if mid in pushed else pulls_own).append(ans)
        log(f"[pull] {len(pulls)} of {min(PULLS, len(aors))} pulls with {len(up)} calls and "
            f"{total_bindings} bindings: INVITE *11 -> 200 at the device median "
            f"{med(pulls):.0f} us, p99 {pct(pulls, 99):.0f} us; qrxferd's own INVITE in -> 200 "
            f"out (store lookup by flow, re-INVITE to C and C's answer included) median "
            f"{med(pulls_own):.0f} us, p99 {pct(pulls_own, 99):.0f} us")
        log(f"[push] {len(pushes_ans)} of {min(PUSHES, max(0, len(aors) - PULLS))} pushes: POST "
            f"-> the device's INVITE median {med(pushes_ring):.0f} us, p99 "
            f"{pct(pushes_ring, 99):.0f} us (HTTP and the store's list of the AOR's bindings "
            f"included); the device's 200 -> its ACK with C's answer median "
            f"{med(pushes_ans):.0f} us, p99 {pct(pushes_ans, 99):.0f} us; qrxferd's own "
            f"device answer -> ACK median {med(pushes_own):.0f} us, p99 "
            f"{pct(pushes_own, 99):.0f} us")
        for rate, v in reg.items():
            log(f"[register] {rate}/s asked: achieved median {med([x[0] for x in v]):.0f}/s, "
                f"lost {[x[1] for x in v]}, missing bindings {[x[2] for x in v]}, CPU median "
                f"{med([x[3] for x in v]):.0f} us a REGISTER (runs: "
                f"{', '.join(f'{x[0]:.0f}/s' for x in v)})")
        for b in bad[:10]:
            log(f"  problem: {b}")
        if bad:
            log(f"  {len(bad)} problems in all")
        stop(a)
        stop(c)
        rc = stop(d)
        log(f"qrxferd exit status {rc}")
        status = 0 if not bad else 1
    finally:
        cleanup()
        if keep:
            log(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
