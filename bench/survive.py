#!/usr/bin/env python3
"""make bench-survive: calls that outlive qrxferd (bench/README.md).

1. Restarts under load: SIPp calls through qrxferd at BENCH_SURVIVE_RATE calls/s (200) with
   1 s holds for BENCH_SURVIVE_SECS s (60); qrxferd is SIGKILLed and started again at one
   third and two thirds of the run. Counted: calls that failed at the caller, calls whose far
   side never got its BYE (the UAS's failed calls), and how long each start took to serve the
   calls of the run before (its log line "N of M calls of the previous run served again").
2. Read-back time: BENCH_SURVIVE_HELD calls (10,000) held up, SIGKILL, start: the time from the
   start to serving all of them again, and the new process's RSS.
3. What writing the state costs: CPU per call at 200 calls/s with 1 s holds, [store]
   call_state = yes against no (median of BENCH_SURVIVE_RUNS runs each, 3), beside Kamailio
   5.6 in the same runs (bench/kamailio.cfg, as make bench-sip).

4. A dead node: two nodes on one PostgreSQL (QRXFER_TEST_PG_URL: run under
   tests/store/pg.sh --run, as make bench-survive does) behind Kamailio with the shipped
   etc/pbx/kamailio-dispatcher.cfg; SIPp calls at 200 calls/s with 1 s holds for 60 s through
   Kamailio; one node SIGKILLed at 20 s and not started again. Counted as in part 1.

Everything on 127.0.0.1; every process it starts is stopped at the end.
"""
import os
import re
import signal
import statistics
import sys
import tempfile
import time

import bench as B
from benchlib import cleanup, env_int, rss_kib, sip_ping, spawn, stop

RATE = env_int("BENCH_SURVIVE_RATE", 200)
SECS = env_int("BENCH_SURVIVE_SECS", 60)
HELD = env_int("BENCH_SURVIVE_HELD", 10000)
RUNS = env_int("BENCH_SURVIVE_RUNS", 3)
COST_SECS = env_int("BENCH_SURVIVE_COST_SECS", 30)
GOAL_START_S = 1.0
SERVED = re.compile(r"(\d+) of (\d+) calls of the previous run served again")

log = B.log


class Node(B.Target):
    """qrxferd on its own SQLite file, which a restart keeps."""

    def __init__(self, scratch, uas_port, extra=""):
        super().__init__("qrxferd", scratch, uas_port)
        self.extra = extra
        self.argv = None
        self.dir = None

    def start(self, tag):
        self.dir = os.path.join(self.scratch, f"qrxferd-{tag}")
        os.makedirs(self.dir, exist_ok=True)
        self.logpath = os.path.join(self.dir, "qrxferd.log")
        http = B.free_port(1)
        tok = os.path.join(self.dir, "admin.token")
        with open(tok, "w") as f:
            f.write("bench-token\n")
        conf = os.path.join(self.dir, "qrxfer.conf")
        with open(conf, "w") as f:
            f.write(f"[module]\nload = {B.MODULE}\n[log]\nlevel = info\n"
                    f"[sip]\nlisten = sip:127.0.0.1:{self.port}\ndomain = qrxfer.test\n"
                    f"upstream = sip:127.0.0.1:{self.uas_port}\n"
                    f"[http]\nlisten = 127.0.0.1:{http}\nadmin_token_file = {tok}\n"
                    f"[store]\nurl = sqlite://{self.dir}/qrxfer.db\n{self.extra}"
                    f"[codes]\nhmac_key_file = {self.dir}/hmac.key\n")
        self.argv = [B.QRXFERD, "-c", conf, "-M", B.MODDIR]
        self.proc = spawn(self.argv, self.logpath, self.dir)
        if not sip_ping(self.port, 15):
            raise RuntimeError(f"qrxferd not answering on 127.0.0.1:{self.port}; see {self.logpath}")
        time.sleep(0.5)

    def kill_and_start(self, wait_served=30.0):
        """SIGKILL, start again at once: (seconds from the start to "served again", calls
        served, calls read) or (None, 0, 0) when the line did not come."""
        stop(self.proc, signal.SIGKILL, 5.0)
        with open(self.logpath, "rb") as f:
            f.seek(0, os.SEEK_END)
            offset = f.tell()
        t0 = time.monotonic()
        self.proc = spawn(self.argv, self.logpath, self.dir)
        while time.monotonic() - t0 < wait_served:
            with open(self.logpath, "rb") as f:
                f.seek(offset)
                m = SERVED.search(f.read().decode("utf-8", "replace"))
            if m:
                return time.monotonic() - t0, int(m.group(1)), int(m.group(2))
            if self.proc.poll() is not None:
                break
            time.sleep(0.005)
        return None, 0, 0


def losses(r):
    """Prints what a run lost; returns the far legs that never got their BYE.

    Counted from what the far side (the SIPp UAS) received, message by message: a far leg
    whose INVITE came and whose BYE never did is a call the PBX would keep up (and bill)
    until its own timers; one of them that never got its ACK either is a set-up the kill
    caught after the PBX answered (the caller's retransmission set the call up again through
    the other node; the PBX ends such a leg itself 32 s after its 200, RFC 3261 13.3.1.4)."""
    no_bye = max(0, r["uas_invites"] - r["uas_byes"])
    no_ack = max(0, r["uas_invites"] - r["uas_acks"])
    log(f"  {B.describe(r)}")
    log(f"  calls that failed at the caller: {r['failed']} of {r['calls']}; far legs that got "
        f"no BYE: {no_bye} (goal 0), of them never ACKed (set-ups the kill caught): {no_ack}")
    return no_bye


def restarts(scratch):
    log(f"\n## 1. SIGKILL + start twice under load: {RATE} calls/s, 1 s holds, {SECS} s")
    uas_port = B.free_port(2)
    node = Node(scratch, uas_port)
    node.start("restarts")
    kills = [SECS / 3.0, 2 * SECS / 3.0]
    starts = []

    def during(d, t0, extra):
        if kills and time.monotonic() - t0 >= kills[0]:
            kills.pop(0)
            took, n, m = node.kill_and_start()
            starts.append((took, n, m))
            if took is None:
                log("  !! the restarted qrxferd never said it served the previous run's calls")
            else:
                log(f"  killed and started at {time.monotonic() - t0:.1f} s: {n} of {m} calls "
                    f"served again {took * 1000:.0f} ms after the start")

    r = B.sipp_traffic(node, "restarts", RATE, RATE * SECS, 1000, 2, during=during,
                       uas_spare=RATE * 10)
    lost_bye = losses(r)
    node.stop("restarts")
    return r, starts, lost_bye


def read_back(scratch):
    log(f"\n## 2. {HELD} calls held, SIGKILL, start: time to serve them all again")
    uas_port = B.free_port(2)
    node = Node(scratch, uas_port)
    node.start("held")
    out = {}

    def during(d, t0, extra):
        if out or not os.path.exists(os.path.join(d, "uas.csv")):
            return
        row = B.last_row(os.path.join(d, "uas.csv"))
        if B.stat_int(row, "CurrentCall") < HELD and B.stat_int(row, "TotalCallCreated") < HELD:
            return
        # every call answered and ACKed: the UAS waits for BYEs that come after the hold
        time.sleep(2.0)
        took, n, m = node.kill_and_start(60.0)
        out.update(took=took, n=n, m=m, rss=rss_kib(node.proc.pid))
        raise StopIteration

    try:
        B.sipp_traffic(node, "held", 500, HELD, 600000, 0, limit=HELD, during=during)
    except StopIteration:
        pass
    cleanup()
    if out.get("took") is None:
        log("  !! the restarted qrxferd never said it served the held calls")
    else:
        log(f"  {out['n']} of {out['m']} calls served again {out['took'] * 1000:.0f} ms after the "
            f"start (goal < {GOAL_START_S * 1000:.0f} ms for 10,000); RSS then "
            f"{out['rss'] / 1024:.1f} MiB")
    return out


def cost(scratch):
    log(f"\n## 3. CPU per call, {RATE} calls/s, 1 s holds, {COST_SECS} s, {RUNS} runs each")
    per = {"state": [], "nostate": [], "kamailio": []}
    for i in range(RUNS):
        for kind in per:
            uas_port = B.free_port(2)
            if kind == "kamailio":
                t = B.Target("kamailio", scratch, uas_port)
            else:
                t = Node(scratch, uas_port, "" if kind == "state" else "call_state = no\n")
            t.start(f"cost-{kind}-{i}")
            r = B.sipp_traffic(t, f"cost-{kind}-{i}", RATE, RATE * COST_SECS, 1000, 2)
            t.stop(f"cost-{kind}-{i}")
            us = B.per_call_us(r)
            per[kind].append(us)
            log(f"  {kind:9} run {i + 1}: {us:.0f} us/call ({B.describe(r)})")
    med = {k: statistics.median(v) for k, v in per.items()}
    log(f"  median: with state {med['state']:.0f} us/call, without {med['nostate']:.0f}, "
        f"Kamailio {med['kamailio']:.0f}: writing the state costs "
        f"{med['state'] - med['nostate']:.0f} us/call; qrxferd with state "
        f"{med['state'] / med['kamailio']:.2f}x Kamailio (goal <= 1.0x)")
    return med


class Cluster:
    """Kamailio (the shipped config) in front of two qrxferd nodes on one PostgreSQL; a Target
    for sipp_traffic: SIPp sends to Kamailio's phones socket, the nodes' upstream is its nodes
    socket, which passes new calls on to the SIPp UAS."""

    def __init__(self, scratch, uas_port):
        self.kind = "cluster"
        self.scratch = scratch
        self.uas_port = uas_port
        self.port = B.free_port(2)   # Kamailio: phones
        self.k2 = B.free_port(2)     # Kamailio: nodes and the PBX
        self.nodes = []

    def start(self, tag):
        d = os.path.join(self.scratch, f"cluster-{tag}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "admin.token"), "w") as f:
            f.write("bench-token\n")
        ports = []
        for n in (1, 2):
            port, http = B.free_port(2), B.free_port(1)
            conf = os.path.join(d, f"node{n}.conf")
            with open(conf, "w") as f:
                f.write(f"[module]\nload = {B.MODULE}\n[log]\nlevel = info\n"
                        f"[sip]\nlisten = sip:127.0.0.1:{port}\ndomain = qrxfer.test\n"
                        f"upstream = sip:127.0.0.1:{self.k2}\n"
                        f"[http]\nlisten = 127.0.0.1:{http}\n"
                        f"admin_token_file = {d}/admin.token\n"
                        f"[store]\nurl = {os.environ['QRXFER_TEST_PG_URL']}\nlease = 2\n"
                        f"[codes]\nhmac_key_file = {d}/hmac.key\n")
            p = spawn([B.QRXFERD, "-c", conf, "-M", B.MODDIR], os.path.join(d, f"node{n}.log"), d)
            if not sip_ping(port, 15):
                raise RuntimeError(f"node {n} not answering; see {d}/node{n}.log")
            self.nodes.append(p)
            ports.append(port)
        with open(os.path.join(d, "nodes.list"), "w") as f:
            f.write("".join(f"1 sip:127.0.0.1:{p}\n" for p in ports))
        run = os.path.join(d, "kamrun")
        os.makedirs(run, exist_ok=True)
        self.kam = spawn([B.KAMAILIO, "-f", os.path.join(B.TOP_SRC, "etc/pbx/kamailio-dispatcher.cfg"),
                          "-Y", run, "-DD", "-E", "-m", "256", "-M", "16",
                          "-A", f"QRX_PHONES=udp:127.0.0.1:{self.port}",
                          "-A", f"QRX_NODES=udp:127.0.0.1:{self.k2}",
                          "-A", f'QRX_PBX="sip:127.0.0.1:{self.uas_port}"',
                          "-A", f'QRX_LIST="{d}/nodes.list"', "-A", "QRX_PING=1",
                          "-A", "QRX_PING_FAILS=1", "-A", "QRX_NODE_TIMEOUT=1500"],
                         os.path.join(d, "kamailio.log"), d)
        if not sip_ping(self.port, 15):
            raise RuntimeError(f"kamailio not answering; see {d}/kamailio.log")
        time.sleep(3.0)  # the probes mark both nodes up

    def pids(self):
        return [p.pid for p in self.nodes if p.poll() is None]

    def stop(self, tag):
        for p in self.nodes + [self.kam]:
            stop(p, signal.SIGTERM, 10.0)


def dead_node(scratch):
    log(f"\n## 4. two nodes behind Kamailio, one SIGKILLed: {RATE} calls/s, 1 s holds, {SECS} s")
    if not os.environ.get("QRXFER_TEST_PG_URL"):
        log("  skipped: no QRXFER_TEST_PG_URL (run under tests/store/pg.sh --run)")
        return None
    cl = Cluster(scratch, B.free_port(2))
    cl.start("dead")
    killed = []

    def during(d, t0, extra):
        if not killed and time.monotonic() - t0 >= SECS / 3.0:
            stop(cl.nodes[0], signal.SIGKILL, 5.0)
            killed.append(time.monotonic() - t0)
            log(f"  node 1 SIGKILLed at {killed[0]:.1f} s")

    r = B.sipp_traffic(cl, "dead", RATE, RATE * SECS, 1000, 2, during=during,
                       uas_spare=RATE * 10)
    lost_bye = losses(r)
    cl.stop("dead")
    return r, lost_bye


def main():
    scratch = tempfile.mkdtemp(prefix="qrxfer-bench-survive.")
    log(f"qrxferd {B.QRXFERD} ({B.MODULE}); {B.SIPP}; scratch {scratch}")
    parts = os.environ.get("BENCH_SURVIVE_PARTS", "1,2,3,4").split(",")
    rc = 0
    try:
        if "1" in parts:
            r, starts, lost = restarts(scratch)
            if r["failed"] or lost or any(s[0] is None for s in starts):
                rc = 1
        if "2" in parts:
            out = read_back(scratch)
            if out.get("took") is None:
                rc = 1
        if "3" in parts:
            cost(scratch)
        if "4" in parts:
            res = dead_node(scratch)
            if res and (res[0]["failed"] or res[1]):
                rc = 1
    finally:
        cleanup()
    log(f"\nbench-survive: {'goals met' if rc == 0 else 'goals not met (see above)'}; "
        f"scratch {scratch}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
