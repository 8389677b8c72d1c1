#!/usr/bin/env python3
"""qrxfer benchmark: SIPp UAC -> qrxferd -> SIPp UAS on loopback, Kamailio alongside.

Run through `make bench` (bench/run.sh). Prints:
  1. at each rate of BENCH_CPU_RATES, per complete call for qrxferd and for Kamailio 5.6
     (tm + rr + dialog) under the same SIPp traffic: CPU (and the ratio), syscalls, voluntary
     and involuntary context switches, for the whole step and per BENCH_WINDOW s window, with
     a flat/rising verdict; and both daemons' memory over the step and its settle time;
  2. the highest call rate qrxferd sustained for BENCH_DURATION seconds with 0 failed calls;
  3. memory per held call with BENCH_HELD calls up at once, qrxferd and Kamailio;
  4. a summary table of every figure next to its goal.
Environment (defaults in brackets; BENCH_QUICK=1 shortens everything for a try-out):
  QRXFERD, QRXFER_MODULE_DIR, QRXFER_MODULE  the daemon [$top_builddir/qrxferd, .libs, mod_qrxfer.so]
  SIPP, KAMAILIO                             tools [from PATH]
  BENCH_DURATION      seconds of traffic per step [60; quick 10]
  BENCH_CPU_RATES     calls/s of the CPU comparison steps, each for qrxferd and Kamailio
                      [200 1000; BENCH_CPU_RATE=N, the old setting, means just N]
  BENCH_WINDOW        seconds per window of the per-call trace [10]
  BENCH_SYSCALLS      0: do not run perf (syscalls are then printed n/a) [1]
  BENCH_RATES         rates tried in order, stopping at the first failure
                      [200 400 700 1000 1400 2000 2800]
  BENCH_HOLD_MS       call hold time in the CPU and rate steps [1000]
  BENCH_SETTLE        seconds CPU is still counted after the last call ends [35; quick 5]
  BENCH_HELD          held calls for the RSS figure [10000; quick 2000]
  BENCH_HELD_RATE     call set-up rate while filling up the held calls [500]
  BENCH_HELD_KAM      0: measure the held calls through qrxferd only, not Kamailio too [1]
  BENCH_LOGLEVEL      qrxferd [log] level during the bench [warn]
  BENCH_KAM_MEM       Kamailio memory manager (-x): tlsf, the faster one, or qm, its debug default [tlsf]
  BENCH_KEEP          keep the scratch folder (logs, sipp stats) when set
"""
import csv
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from benchlib import (SyscallCounter, cleanup, cpu_ticks, ctx_switches, descendants, env_int,
                      free_port, last_row, live, perf_probe, pss_kib, rss_kib, sip_ping, spawn,
                      stat_int, stop, udp_drops)

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRC = os.environ.get("top_srcdir") or os.path.dirname(HERE)
TOP_BUILD = os.environ.get("top_builddir") or os.getcwd()
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")


DURATION = env_int("BENCH_DURATION", 10 if QUICK else 60)
CPU_RATES = [int(x) for x in (os.environ.get("BENCH_CPU_RATES", "").split()
                               or os.environ.get("BENCH_CPU_RATE", "200 1000").split())]
WINDOW = env_int("BENCH_WINDOW", 10)
RATES = [int(x) for x in os.environ.get("BENCH_RATES", "200 400 700 1000 1400 2000 2800").split()]
LOW_RATES = [100, 50, 20]
HOLD_MS = env_int("BENCH_HOLD_MS", 1000)
SETTLE = env_int("BENCH_SETTLE", 5 if QUICK else 35)
HELD = env_int("BENCH_HELD", 2000 if QUICK else 10000)
HELD_RATE = env_int("BENCH_HELD_RATE", 500)
HELD_KAM = os.environ.get("BENCH_HELD_KAM", "1") != "0"
LOGLEVEL = os.environ.get("BENCH_LOGLEVEL", "warn")
QRXFERD = os.environ.get("QRXFERD") or os.path.join(TOP_BUILD, "qrxferd")
MODDIR = os.environ.get("QRXFER_MODULE_DIR") or os.path.join(TOP_BUILD, ".libs")
MODULE = os.environ.get("QRXFER_MODULE") or "mod_qrxfer.so"
SIPP = os.environ.get("SIPP") or shutil.which("sipp") or "sipp"
KAMAILIO = os.environ.get("KAMAILIO") or shutil.which("kamailio") or "/usr/sbin/kamailio"
KAM_MEM = os.environ.get("BENCH_KAM_MEM", "tlsf")
TICK = os.sysconf("SC_CLK_TCK")

GOAL_CPU_RATIO = 1.0
GOAL_RATE = 2800
GOAL_RSS_KIB = 16
FLAT = 1.15  # last window / first window above this is "rising", below 1/FLAT "falling"
PERF = (False, "not probed")  # perf_probe() in main()

findings = []  # daemon misbehaviour seen during the run


def log(msg):
    print(msg, flush=True)


def col(row, suffix):
    """Value of the (one) column whose name ends in suffix, e.g. _ACK_Recv."""
    for k, v in row.items():
        if k.endswith(suffix):
            try:
                return int(v)
            except ValueError:
                return 0
    return 0


class Target:
    """A system under test: qrxferd or Kamailio, on its own loopback port."""

    def __init__(self, kind, scratch, uas_port):
        self.kind = kind
        self.scratch = scratch
        self.uas_port = uas_port
        self.port = free_port(2)
        self.proc = None
        self.logpath = None

    def start(self, tag):
        d = os.path.join(self.scratch, f"{self.kind}-{tag}")
        os.makedirs(d, exist_ok=True)
        self.logpath = os.path.join(d, f"{self.kind}.log")
        if self.kind == "qrxferd":
            http = free_port(1)
            tok = os.path.join(d, "admin.token")
            with open(tok, "w") as f:
                f.write("bench-token\n")
            conf = os.path.join(d, "qrxfer.conf")
            with open(conf, "w") as f:
                f.write(
                    f"[module]\nload = {MODULE}\n[log]\nlevel = {LOGLEVEL}\n"
                    f"[sip]\nlisten   = sip:127.0.0.1:{self.port}\ndomain   = qrxfer.test\n"
                    f"upstream = sip:127.0.0.1:{self.uas_port}\n"
                    f"[http]\nlisten = 127.0.0.1:{http}\nadmin_token_file = {tok}\n"
                    f"[store]\nurl = sqlite://{d}/qrxfer.db\n"
                    f"[codes]\nhmac_key_file = {d}/hmac.key\n"
                )
            argv = [QRXFERD, "-c", conf, "-M", MODDIR]
        else:
            run = os.path.join(d, "run")
            os.makedirs(run, exist_ok=True)
            argv = [KAMAILIO, "-f", os.path.join(HERE, "kamailio.cfg"),
                    "-l", f"udp:127.0.0.1:{self.port}", "-DD", "-E", "-Y", run,
                    "-m", "256", "-M", "16", "-x", KAM_MEM]
        self.proc = spawn(argv, self.logpath, d)
        if not sip_ping(self.port, 15):
            rc = self.proc.poll()
            raise RuntimeError(f"{self.kind} not answering OPTIONS on 127.0.0.1:{self.port}"
                               f" (exit status {rc}); see {self.logpath}")
        time.sleep(1.0)

    def pids(self):
        return descendants(self.proc.pid) if self.kind == "kamailio" else [self.proc.pid]

    def cpu(self):
        return cpu_ticks(self.pids())

    # What memory means for each: qrxferd is one process, and its VmRSS is the figure.
    # Kamailio is a main process and its children, all mapping one shared memory pool (-m):
    # summing their VmRSS would count each touched shm page once per process, so the sum of
    # their Pss is taken, in which every shared page counts once.
    MEM_NAME = {"qrxferd": "VmRSS", "kamailio": "Pss summed over its processes"}

    def mem(self, pids=None):
        """KiB: qrxferd's VmRSS, Kamailio's Pss summed over its processes."""
        if self.kind == "qrxferd":
            return rss_kib(self.proc.pid)
        return pss_kib(pids or self.pids())[0]

    def stop(self, tag):
        rc = stop(self.proc, signal.SIGTERM, 30.0)
        if self.kind == "qrxferd" and rc != 0:
            what = "had to be killed 30 s after SIGTERM" if rc is None else f"exited {rc} on SIGTERM"
            findings.append(f"bench {tag}: qrxferd {what} (log {self.logpath})")
            log(f"  !! qrxferd {what}")
        self.proc = None
        return rc


def sipp_traffic(target, tag, rate, calls, hold_ms, settle, limit=None, during=None, rec=None,
                 uas_spare=0):
    """One SIPp run through target; returns a dict of what happened.

    rec (a Recorder) is told when the idle period, the traffic and the settle time start and
    end, and is ticked every 0.5 s in between. uas_spare: calls the UAS takes beyond calls
    (a SIPp server counts every message that starts no known call as a call: the OPTIONS a
    proxy passes on, a set-up retried through another node; without spare ones they would
    starve the last calls); with spare calls it is stopped 10 s after the UAC ends."""
    d = os.path.join(target.scratch, f"sipp-{target.kind}-{tag}")
    os.makedirs(d, exist_ok=True)
    uas_port = target.uas_port
    uac_port = free_port(2)
    fill_s = calls / rate
    bound = int(fill_s + hold_ms / 1000 + 90)
    limit = limit or max(100, int(rate * (hold_ms / 1000 + 10)))
    common = ["-i", "127.0.0.1", "-nostdin", "-max_socket", "60000", "-t", "u1",
              "-trace_stat", "-trace_counts", "-trace_err", "-fd", "1", "-timeout", f"{bound}s",
              # a late 180 or a retransmitted INVITE is no reason to abort a call; a call
              # that goes wrong still never reaches success (and the UAC times out)
              "-default_behaviors", "all,-abortunexp"]
    uas = spawn([SIPP, "-sf", os.path.join(HERE, "uas.xml"), "-p", str(uas_port),
                 "-mp", str(free_port(4)), "-stf", os.path.join(d, "uas.csv"),
                 "-m", str(calls + uas_spare)] + common, os.path.join(d, "uas.out"), d)
    time.sleep(0.5)
    t_pids = target.pids()
    if rec:
        rec.mark("idle")
    idle0 = cpu_ticks(t_pids)
    time.sleep(2.0)
    idle1 = cpu_ticks(t_pids)
    if rec:
        rec.mark("start")
    idle_per_s = (idle1 - idle0) / 2.0 / TICK
    cpu0 = idle1
    drops0 = udp_drops(target.port)
    sdrops0 = sdrops_max = udp_drops(uas_port)  # the UAC's socket is new: it starts at 0
    t0 = time.monotonic()
    if rec:
        rec.t0 = t0
    uac = spawn([SIPP, "-sf", os.path.join(HERE, "uac.xml"), f"127.0.0.1:{target.port}",
                 "-s", "bench", "-key", "uas_port", str(uas_port), "-p", str(uac_port),
                 "-mp", str(free_port(4)), "-stf", os.path.join(d, "uac.csv"),
                 "-r", str(rate), "-m", str(calls), "-l", str(limit), "-d", str(hold_ms),
                 "-recv_timeout", "32000"]
                + common, os.path.join(d, "uac.out"), d)
    sipp_last = {}
    extra = {}
    while uac.poll() is None and time.monotonic() - t0 < bound + 10:
        if during:
            during(d, t0, extra)
        if rec:
            rec.tick("traffic")
        sdrops_max = max(sdrops_max, udp_drops(uas_port) + udp_drops(uac_port))
        for sp in (uac, uas):  # /proc/PID goes when sipp exits: keep the last sample
            v = cpu_ticks([sp.pid])
            if v:
                sipp_last[sp.pid] = v
        time.sleep(0.5)
    uac_rc = uac.poll()
    t_end = time.monotonic()
    if uac_rc is None:
        stop(uac, signal.SIGKILL)
    else:
        live.remove(uac)
    # the UAS exits by itself after its -m calls (plus timewait)
    try:
        uas.wait(10)
    except subprocess.TimeoutExpired:
        sipp_last[uas.pid] = cpu_ticks([uas.pid]) or sipp_last.get(uas.pid, 0)
        stop(uas, signal.SIGTERM, 5)
    sipp_cpu = sum(sipp_last.values())
    if uas in live:
        live.remove(uas)
    end_traffic = cpu_ticks(t_pids)
    if rec:
        rec.mark("traffic_end")
    drops = udp_drops(target.port) - drops0
    sipp_drops = sdrops_max - sdrops0  # sampled while SIPp ran: its sockets go when it exits
    settle_end = time.monotonic() + settle
    while time.monotonic() < settle_end:
        if rec:
            rec.tick("settle")
        time.sleep(min(0.5, max(0.0, settle_end - time.monotonic())))
    cpu1 = cpu_ticks(t_pids)
    if rec:
        rec.mark("end")
    uac_st, uas_st = last_row(os.path.join(d, "uac.csv")), last_row(os.path.join(d, "uas.csv"))
    uac_ct = last_row(next((os.path.join(d, f) for f in os.listdir(d)
                            if f.startswith("uac_") and f.endswith("_counts.csv")), "/nonexistent"))
    uas_ct = last_row(next((os.path.join(d, f) for f in os.listdir(d)
                            if f.startswith("uas_") and f.endswith("_counts.csv")), "/nonexistent"))
    unexp = sum(int(v or 0) for row in (uac_ct, uas_ct) for k, v in row.items()
                if k.endswith("_Unexp") and v.strip().isdigit())
    r = {
        "rate": rate, "calls": calls, "uac_rc": uac_rc, "wall": t_end - t0,
        "ok": stat_int(uac_st, "SuccessfulCall(C)"), "failed": stat_int(uac_st, "FailedCall(C)"),
        "created": stat_int(uac_st, "TotalCallCreated"),
        "uas_ok": stat_int(uas_st, "SuccessfulCall(C)"),
        "uas_failed": stat_int(uas_st, "FailedCall(C)"),
        "uas_invites": col(uas_ct, "_INVITE_Recv"), "uas_acks": col(uas_ct, "_ACK_Recv"),
        "uas_byes": col(uas_ct, "_BYE_Recv"),
        "retrans": stat_int(uac_st, "Retransmissions(C)") + stat_int(uas_st, "Retransmissions(C)"),
        "invites_100": col(uac_ct, "_100_Recv"),
        "cpu_s": (cpu1 - cpu0) / TICK, "cpu_traffic_s": (end_traffic - cpu0) / TICK,
        "idle_per_s": idle_per_s, "sipp_cpu_s": sipp_cpu / TICK, "dir": d, "drops": drops, "unexp": unexp, "sipp_drops": sipp_drops,
    }
    r.update(extra)
    r["clean"] = (uac_rc == 0 and r["ok"] == calls and r["failed"] == 0
                  and r["uas_ok"] == calls and r["uas_failed"] == 0)
    # sipp only creates calls at the asked rate while it and the target keep up
    r["on_time"] = r["wall"] <= fill_s * 1.05 + hold_ms / 1000 + 5
    return r


def describe(r):
    return (f"{r['ok']}/{r['calls']} ok, {r['failed']} failed (uas {r['uas_ok']} ok, "
            f"{r['uas_failed']} failed), {r['retrans']} SIPp retransmissions, "
            f"{r['unexp']} unexpected messages ignored, "
            f"{r['drops']} datagrams dropped at the target's full UDP socket "
            f"({r['sipp_drops']} at SIPp's), "
            f"{r['wall']:.1f} s, sipp rc {r['uac_rc']}")


def per_call_us(r):
    return r["cpu_s"] * 1e6 / r["ok"] if r["ok"] else float("nan")


class Recorder:
    """What a target costs during one sipp_traffic run: CPU, context switches and memory
    sampled at its marks ("idle", "start", "traffic_end", "end") and every WINDOW s after
    "start"; syscalls counted by perf over the whole run when perf can here (PERF)."""

    def __init__(self, target, tag):
        self.target = target
        self.pids = target.pids()  # Kamailio forks its children at start-up, not later
        self.marks = {}
        self.samples = []  # (phase, sample): "start", "traffic"..., "traffic_end", "settle"..., "end"
        self.t0 = None  # the UAC's start, set by sipp_traffic
        self.sys = None
        self.sys_why = None if PERF[0] else PERF[1]
        if PERF[0]:
            d = os.path.join(target.scratch, f"{target.kind}-{tag}")
            c = SyscallCounter(self.pids, os.path.join(d, "perf.csv"),
                               os.path.join(d, "perf.log"), d)
            if c.error:
                self.sys_why = c.error
                c.stop()
            else:
                self.sys = c

    def sample(self):
        vol, invol = ctx_switches(self.pids)
        return {"t": time.monotonic(), "cpu": cpu_ticks(self.pids), "vcs": vol, "ncs": invol,
                "mem": self.target.mem(self.pids)}

    def mark(self, label):
        s = self.sample()
        self.marks[label] = s
        if label != "idle":
            self.samples.append((label, s))

    def tick(self, phase):
        if self.samples and time.monotonic() - self.samples[-1][1]["t"] >= WINDOW:
            self.samples.append((phase, self.sample()))

    def close(self):
        if self.sys:
            self.sys.stop()

    def delta(self, a, b):
        """Counts between two samples: CPU s, syscalls (None: not counted), vol. and invol. cs."""
        return {"cpu_s": (b["cpu"] - a["cpu"]) / TICK,
                "sys": self.sys.count(a["t"], b["t"]) if self.sys else None,
                "vcs": b["vcs"] - a["vcs"], "ncs": b["ncs"] - a["ncs"], "s": b["t"] - a["t"]}


def calls_worth(rate, calls, hold_s, a, b):
    """How many calls' worth of work SIPp's traffic puts in [a, b) s after the UAC started:
    half the calls set up in it plus half the calls hung up in it. Calls start at `rate`
    until `calls` are made, and each ends hold_s after its start. So the first window, which
    has set-ups but no hang-ups for its first hold_s, is not made to look cheap."""
    fill = calls / rate

    def made(t):
        return rate * min(max(t, 0.0), fill)

    return ((made(b) - made(a)) + (made(b - hold_s) - made(a - hold_s))) / 2


def per(n, calls, fmt):
    return "n/a" if n is None or not calls else format(n / calls, fmt)


def trend(first, last):
    """last/first and its word: flat within FLAT either way."""
    if first is None or last is None or first <= 0:
        return None, "n/a"
    q = last / first
    return q, "rising" if q > FLAT else "falling" if q < 1 / FLAT else "flat"


def mib(kib):
    return f"{kib / 1024:.1f}"


def cpu_step(kind, scratch, uas_port, rate):
    t = Target(kind, scratch, uas_port)
    tag = f"cpu{rate}"
    pre = f"[cpu {rate}/s] {kind}:"
    t.start(tag)
    calls = rate * DURATION
    log(f"{pre} {calls} calls at {rate} calls/s, hold {HOLD_MS} ms, "
        f"counted until {SETTLE} s after the last call")
    rec = Recorder(t, tag)
    try:
        r = sipp_traffic(t, tag, rate, calls, HOLD_MS, SETTLE, rec=rec)
    finally:
        rec.close()
        t.stop(tag)
    m = rec.marks
    ok = r["ok"]
    tot = rec.delta(m["start"], m["end"]) if "end" in m else None
    idle = rec.delta(m["idle"], m["start"]) if "start" in m else None
    log(f"{pre} {describe(r)}")
    if tot:
        r["sys_pc"] = tot["sys"] / ok if ok and tot["sys"] is not None else None
        r["vcs_pc"] = tot["vcs"] / ok if ok else None
        r["ncs_pc"] = tot["ncs"] / ok if ok else None
        log(f"{pre} per complete call: CPU {per_call_us(r):.0f} us, "
            f"{per(tot['sys'], ok, '.1f')} syscalls, {per(tot['vcs'], ok, '.1f')} voluntary and "
            f"{per(tot['ncs'], ok, '.2f')} involuntary context switches "
            f"(CPU {r['cpu_s']:.2f} s, {r['cpu_traffic_s']:.2f} s of it while calls ran); "
            f"sipp used {r['sipp_cpu_s']:.1f} s")
        sys_idle = "n/a" if idle["sys"] is None else f"{idle['sys'] / idle['s']:.0f}"
        log(f"{pre} idle before: CPU {idle['cpu_s'] / idle['s'] * 1000:.1f} ms/s, "
            f"{sys_idle} syscalls/s, {(idle['vcs'] + idle['ncs']) / idle['s']:.0f} "
            f"context switches/s")
    if rec.sys is None:
        log(f"{pre} syscalls: n/a ({rec.sys_why})")

    # the windows of traffic: from "start" to each "traffic" sample (the rest, the calls'
    # last hang-ups, is left out)
    pts = [s for ph, s in rec.samples if ph in ("start", "traffic")]
    hold_s = HOLD_MS / 1000
    wins = []
    for a, b in zip(pts, pts[1:]):
        dl = rec.delta(a, b)
        w = calls_worth(rate, calls, hold_s, a["t"] - rec.t0, b["t"] - rec.t0)
        wins.append({"a": max(0.0, a["t"] - rec.t0), "b": b["t"] - rec.t0, "calls": w,
                     "cpu": dl["cpu_s"] * 1e6 / w if w else None,
                     "sys": dl["sys"] / w if w and dl["sys"] is not None else None,
                     "vcs": dl["vcs"] / w if w else None, "ncs": dl["ncs"] / w if w else None})
    r["windows"] = wins
    r["trend"] = {}
    if wins:
        log(f"{pre} per call in successive {WINDOW} s windows of traffic (a window's calls: "
            f"half its set-ups plus half its hang-ups):")
        rows = [("window (s)", [f"{w['a']:.0f}-{w['b']:.0f}" for w in wins]),
                ("CPU us", [per(w["cpu"], 1, ".0f") for w in wins]),
                ("syscalls", [per(w["sys"], 1, ".1f") for w in wins]),
                ("voluntary cs", [per(w["vcs"], 1, ".1f") for w in wins]),
                ("involuntary cs", [per(w["ncs"], 1, ".2f") for w in wins])]
        for name, cells in rows:
            log(f"{pre}   {name:<15}" + "".join(f"{c:>9}" for c in cells))
    words = []
    for key, name in (("cpu", "CPU"), ("sys", "syscalls"), ("vcs", "voluntary cs"),
                      ("ncs", "involuntary cs")):
        q, word = trend(wins[0][key], wins[-1][key]) if len(wins) >= 2 else (None, "n/a")
        r["trend"][key] = (q, word)
        words.append(f"{name} {q:.2f}x {word}" if q is not None else f"{name} n/a")
    if len(wins) >= 2:
        log(f"{pre} last/first window: {', '.join(words)} (flat: within {FLAT:.2f}x either way)")
    else:
        log(f"{pre} last/first window: n/a ({len(wins)} full {WINDOW} s window(s) of traffic; "
            f"BENCH_DURATION or BENCH_WINDOW)")

    # memory over the step: live calls at the rate, then what stays once nothing is live
    mem, cells = [], []
    for ph, s_ in rec.samples:
        if ph in ("start", "traffic", "traffic_end"):
            label = "before" if ph == "start" else f"{s_['t'] - rec.t0:.0f} s"
            if ph == "traffic_end":
                label += " (traffic over)"
        else:
            label = f"+{s_['t'] - m['traffic_end']['t']:.0f} s"  # after "traffic over"
        mem.append((ph, label, s_["mem"]))
    if mem:
        r["mem"] = {"before": mem[0][2], "peak": max(k for _, _, k in mem), "end": mem[-1][2]}
        settled = [f"{lb} {mib(k)}" for ph, lb, k in mem if ph in ("settle", "end")]
        log(f"{pre} {Target.MEM_NAME[kind]}, MiB: "
            + ", ".join(f"{lb} {mib(k)}" for ph, lb, k in mem if ph not in ("settle", "end"))
            + (f"; after the last call: {', '.join(settled)}" if settled else ""))
    return r


def rate_search(scratch, uas_port, cpu_results):
    """Rates of RATES in order, each BENCH_DURATION s, until one fails; a CPU step at the same
    rate (qrxferd's) counts as that rate's step."""
    best, steps = None, []
    for rate in RATES:
        if rate in cpu_results:
            r = cpu_results[rate]
            src = " (the CPU step)"
        else:
            t = Target("qrxferd", scratch, uas_port)
            t.start(f"rate{rate}")
            try:
                r = sipp_traffic(t, f"rate{rate}", rate, rate * DURATION, HOLD_MS, 2)
            finally:
                t.stop(f"rate{rate}")
            src = ""
        steps.append(r)
        ok = r["clean"] and r["on_time"]
        log(f"[rate] {rate} calls/s for {DURATION} s{src}: {'PASS' if ok else 'FAIL'}: "
            f"{describe(r)}; {per_call_us(r):.0f} us CPU/call")
        if not ok:
            if not r["on_time"]:
                log(f"[rate]   calls took {r['wall']:.1f} s instead of ~{DURATION + HOLD_MS / 1000:.0f} s:"
                    f" the rate was not kept")
            if best is None:
                for low in LOW_RATES:
                    if low >= rate:
                        continue
                    t = Target("qrxferd", scratch, uas_port)
                    t.start(f"rate{low}")
                    try:
                        r2 = sipp_traffic(t, f"rate{low}", low, low * DURATION, HOLD_MS, 2)
                    finally:
                        t.stop(f"rate{low}")
                    ok2 = r2["clean"] and r2["on_time"]
                    log(f"[rate] {low} calls/s: {'PASS' if ok2 else 'FAIL'}: {describe(r2)}")
                    if ok2:
                        best = low
                        break
            break
        best = rate
    return best, steps


def held_step(kind, scratch, uas_port):
    t = Target(kind, scratch, uas_port)
    t.start("held")
    rate = HELD_RATE
    fill = HELD / rate
    hold_ms = int((fill + 25) * 1000)
    pre = f"[held] {kind}:"
    log(f"{pre} {HELD} calls set up at {rate} calls/s, each held {hold_ms / 1000:.0f} s")
    pids = t.pids()
    mem0 = t.mem(pids)
    peak = {"up": 0, "t": None}

    def during(d, t0, extra):
        ct = last_row(next((os.path.join(d, f) for f in os.listdir(d)
                            if f.startswith("uas_") and f.endswith("_counts.csv")), "/nonexistent"))
        up = col(ct, "_ACK_Recv") - col(ct, "_BYE_Recv")
        now = time.monotonic() - t0
        if now > fill + 20 or extra.get("done"):
            return
        if up > peak["up"]:
            peak["up"], peak["t"] = up, now
        # plateau: every call up (or no new call up for 5 s after filling), then 3 s more
        if peak["t"] is not None and (up >= HELD or now - peak["t"] > 5) and now >= fill:
            if "since" not in extra:
                extra["since"] = now
            elif now - extra["since"] >= 3:
                extra["mem_kib"] = t.mem(pids)
                extra["up"] = up
                extra["at_s"] = now
                extra["done"] = True

    try:
        r = sipp_traffic(t, "held", rate, HELD, hold_ms, 0, limit=HELD, during=during)
    finally:
        t.stop("held")
    log(f"{pre} {describe(r)}")
    if "mem_kib" not in r or not r.get("up"):
        log(f"{pre} no plateau reached: no memory figure")
        return None
    grow = r["mem_kib"] - mem0
    per_call = grow / r["up"]
    log(f"{pre} {Target.MEM_NAME[kind]} {mem0} KiB before, {r['mem_kib']} KiB with {r['up']} "
        f"calls up (at {r['at_s']:.0f} s): {per_call:.1f} KiB per held call")
    return {"mem0": mem0, "mem1": r["mem_kib"], "up": r["up"], "per": per_call, "r": r}


def summary(out):
    """The table of every figure beside its goal."""
    rows = []
    q_cpu, k_cpu = out.get("q", {}), out.get("k", {})

    def calls_note(r):
        return "" if r["clean"] else f" ({r['ok']}/{r['calls']} ok, {r['failed']} failed)"

    for rate in CPU_RATES:
        q, k = q_cpu.get(rate), k_cpu.get(rate)
        if not (q or k):
            continue
        head = f"{rate} calls/s"
        qc = per_call_us(q) if q else None
        kc = per_call_us(k) if k else None
        ratio = qc / kc if qc and kc else None
        verdict = ("n/a" if ratio is None else
                   f"{ratio:.2f}x {'met' if ratio <= GOAL_CPU_RATIO else 'NOT met'}")
        rows.append((f"CPU per complete call, {head} x {DURATION} s + {SETTLE} s settle",
                     f"{qc:.0f} us{calls_note(q)}" if q else "-",
                     f"{kc:.0f} us{calls_note(k)}" if k else "-",
                     f"ratio <= {GOAL_CPU_RATIO:.1f}x: {verdict}"))

        def tr(r, key):
            if not r:
                return "-"
            qv, word = r["trend"].get(key, (None, "n/a"))
            return "n/a" if qv is None else f"{qv:.2f}x {word}"

        rows.append((f"CPU per call, last/first {WINDOW} s window, {head}",
                     tr(q, "cpu"), tr(k, "cpu"), "flat, not rising"))
        rows.append((f"syscalls per call (last/first window), {head}",
                     *[("-" if not r else
                        f"{per(r.get('sys_pc'), 1, '.1f')} ({tr(r, 'sys')})") for r in (q, k)],
                     "(no goal)"))
        rows.append((f"voluntary / involuntary context switches per call, {head}",
                     *[("-" if not r else f"{per(r.get('vcs_pc'), 1, '.1f')} / "
                        f"{per(r.get('ncs_pc'), 1, '.2f')} ({tr(r, 'vcs')})") for r in (q, k)],
                     "(no goal)"))

        def memrow(r):
            if not r or "mem" not in r:
                return "-"
            m = r["mem"]
            grew = m["peak"] - m["before"]
            kept = m["end"] - m["before"]
            share = f", {kept / grew * 100:.0f} % of the rise kept" if grew > 0 else ""
            return f"{mib(m['before'])} -> peak {mib(m['peak'])} -> {mib(m['end'])} MiB{share}"

        rows.append((f"memory before -> peak -> {SETTLE} s after the last call, {head}",
                     memrow(q), memrow(k), "bounded by what is live"))
    if "best" in out:
        best = out["best"]
        met = best and best >= GOAL_RATE and DURATION >= 60
        rows.append((f"highest rate for {DURATION} s with 0 failed calls",
                     f"{best} calls/s" if best else "none of the rates tried", "(not run)",
                     f">= {GOAL_RATE} calls/s for 60 s: {'met' if met else 'NOT met'}"
                     + ("" if DURATION >= 60 else " (steps shorter than 60 s)")))
    hq, hk = out.get("held_q"), out.get("held_k")
    if "held_q" in out or "held_k" in out:
        def heldcell(h):
            if not h:
                return "no figure"
            return f"{h['per']:.1f} KiB ({h['up']} up)"

        up = hq["up"] if hq else 0
        note = "" if up >= 10000 else f" (only {up} held, not 10,000)"
        verdict = "n/a" if not hq else "met" if hq["per"] < GOAL_RSS_KIB else "NOT met"
        rows.append((f"memory per held call, {HELD} calls up",
                     heldcell(hq), heldcell(hk) if "held_k" in out else "(not run)",
                     f"< {GOAL_RSS_KIB} KiB at 10,000 held: {verdict}{note}"))
    head = ("figure", "qrxferd", "Kamailio 5.6", "goal")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(4)]
    log("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    log("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        log("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")


def main():
    global PERF
    for p, what in ((QRXFERD, "qrxferd"), (os.path.join(MODDIR, MODULE), "module")):
        if not os.path.exists(p):
            sys.exit(f"bench: {what} {p} not built (run make first)")
    scratch = tempfile.mkdtemp(prefix="qrx-bench.")
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    start = time.monotonic()
    load0 = os.getloadavg()
    PERF = perf_probe()
    log(f"qrxfer bench ({'QUICK, ' if QUICK else ''}{DURATION} s per step) on {os.cpu_count()} "
        f"CPUs shared by qrxferd/Kamailio AND both SIPp instances; load average at start "
        f"{load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")
    log(f"qrxferd {QRXFERD} ({MODULE}, log level {LOGLEVEL}); {KAMAILIO}; {SIPP}; scratch {scratch}")
    log(f"CPU steps at {' '.join(map(str, CPU_RATES))} calls/s; {WINDOW} s windows; syscalls: "
        + (f"counted with {PERF[1]} (stat -e raw_syscalls:sys_enter)" if PERF[0]
           else f"n/a ({PERF[1]})"))
    out = {"q": {}, "k": {}}
    try:
        uas_port = free_port(2)
        for rate in CPU_RATES:
            out["q"][rate] = cpu_step("qrxferd", scratch, uas_port, rate)
            out["k"][rate] = cpu_step("kamailio", scratch, uas_port, rate)
        out["best"], out["steps"] = rate_search(scratch, uas_port, out["q"])
        out["held_q"] = held_step("qrxferd", scratch, uas_port)
        if HELD_KAM:
            out["held_k"] = held_step("kamailio", scratch, uas_port)
    except RuntimeError as e:
        log(f"bench: {e}")
        findings.append(str(e))
    finally:
        cleanup()

    load1 = os.getloadavg()
    log("")
    log("==== qrxfer bench results ====")
    log(f"machine: {os.cpu_count()} CPUs shared by the proxy under test and both SIPp instances; "
        f"load average {load0[0]:.2f} at start, {load1[0]:.2f} at end; "
        f"{(time.monotonic() - start) / 60:.1f} min; hold {HOLD_MS} ms; syscalls "
        + ("by perf" if PERF[0] else f"n/a ({PERF[1]})"))
    log(f"memory: qrxferd {Target.MEM_NAME['qrxferd']}, Kamailio {Target.MEM_NAME['kamailio']} "
        f"(its shm pool counted once)")
    summary(out)
    for f in findings:
        log(f"daemon finding: {f}")
    if os.environ.get("BENCH_KEEP") or findings:
        log(f"logs kept in {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if findings else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        cleanup()
