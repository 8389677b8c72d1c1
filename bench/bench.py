#!/usr/bin/env python3
"""qrxfer benchmark: SIPp UAC -> qrxferd -> SIPp UAS on loopback, Kamailio alongside.

Run through `make bench` (bench/run.sh). Prints:
  1. CPU per complete call used by qrxferd, and by Kamailio 5.6 (tm + rr + dialog) for the
     same SIPp traffic, and their ratio;
  2. the highest call rate qrxferd sustained for BENCH_DURATION seconds with 0 failed calls;
  3. RSS per held call with BENCH_HELD calls up at once.
Environment (defaults in brackets; BENCH_QUICK=1 shortens everything for a try-out):
  QRXFERD, QRXFER_MODULE_DIR, QRXFER_MODULE  the daemon [$top_builddir/qrxferd, .libs, mod_qrxfer.so]
  SIPP, KAMAILIO                             tools [from PATH]
  BENCH_DURATION      seconds of traffic per step [60; quick 10]
  BENCH_CPU_RATE      calls/s of the CPU comparison [200]
  BENCH_RATES         rates tried in order, stopping at the first failure
                      [200 400 700 1000 1400 2000 2800]
  BENCH_HOLD_MS       call hold time in the CPU and rate steps [1000]
  BENCH_SETTLE        seconds CPU is still counted after the last call ends [35; quick 5]
  BENCH_HELD          held calls for the RSS figure [10000; quick 2000]
  BENCH_HELD_RATE     call set-up rate while filling up the held calls [500]
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

from benchlib import (cleanup, env_int, free_port, last_row, live, sip_ping, spawn, udp_drops,
                      stat_int, stop)

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRC = os.environ.get("top_srcdir") or os.path.dirname(HERE)
TOP_BUILD = os.environ.get("top_builddir") or os.getcwd()
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")


DURATION = env_int("BENCH_DURATION", 10 if QUICK else 60)
CPU_RATE = env_int("BENCH_CPU_RATE", 200)
RATES = [int(x) for x in os.environ.get("BENCH_RATES", "200 400 700 1000 1400 2000 2800").split()]
LOW_RATES = [100, 50, 20]
HOLD_MS = env_int("BENCH_HOLD_MS", 1000)
SETTLE = env_int("BENCH_SETTLE", 5 if QUICK else 35)
HELD = env_int("BENCH_HELD", 2000 if QUICK else 10000)
HELD_RATE = env_int("BENCH_HELD_RATE", 500)
LOGLEVEL = os.environ.get("BENCH_LOGLEVEL", "warn")
QRXFERD = os.environ.get("QRXFERD") or os.path.join(TOP_BUILD, "qrxferd")
MODDIR = os.environ.get("QRXFER_MODULE_DIR") or os.path.join(TOP_BUILD, ".libs")
MODULE = os.environ.get("QRXFER_MODULE") or "mod_qrxfer.so"
SIPP = os.environ.get("SIPP") or shutil.which("sipp") or "sipp"
KAMAILIO = os.environ.get("KAMAILIO") or shutil.which("kamailio") or "/usr/sbin/kamailio"
KAM_MEM = os.environ.get("BENCH_KAM_MEM", "tlsf")
TICK = os.sysconf("SC_CLK_TCK")

GOAL_CPU_RATIO = 1.0
GOAL_RATE = 1000
GOAL_RSS_KIB = 16

findings = []  # daemon misbehaviour seen during the run


def log(msg):
    print(msg, flush=True)


def descendants(pid):
    """pid and all its descendants (Kamailio's children), from /proc."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_ticks(pids):
    """utime+stime summed over pids (all threads of each), in clock ticks."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
    return total


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


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

    def stop(self, tag):
        rc = stop(self.proc, signal.SIGTERM, 30.0)
        if self.kind == "qrxferd" and rc != 0:
            what = "had to be killed 30 s after SIGTERM" if rc is None else f"exited {rc} on SIGTERM"
            findings.append(f"bench {tag}: qrxferd {what} (log {self.logpath})")
            log(f"  !! qrxferd {what}")
        self.proc = None
        return rc


def sipp_traffic(target, tag, rate, calls, hold_ms, settle, limit=None, during=None):
    """One SIPp run through target; returns a dict of what happened."""
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
                 "-m", str(calls)] + common, os.path.join(d, "uas.out"), d)
    time.sleep(0.5)
    t_pids = target.pids()
    idle0 = cpu_ticks(t_pids)
    time.sleep(2.0)
    idle1 = cpu_ticks(t_pids)
    idle_per_s = (idle1 - idle0) / 2.0 / TICK
    cpu0 = idle1
    drops0 = udp_drops(target.port)
    sdrops0 = sdrops_max = udp_drops(uas_port)  # the UAC's socket is new: it starts at 0
    t0 = time.monotonic()
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
    drops = udp_drops(target.port) - drops0
    sipp_drops = sdrops_max - sdrops0  # sampled while SIPp ran: its sockets go when it exits
    if settle > 0:
        time.sleep(settle)
    cpu1 = cpu_ticks(t_pids)
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


def cpu_step(kind, scratch, uas_port):
    t = Target(kind, scratch, uas_port)
    t.start("cpu")
    calls = CPU_RATE * DURATION
    log(f"[cpu] {kind}: {calls} calls at {CPU_RATE} calls/s, hold {HOLD_MS} ms, "
        f"CPU counted until {SETTLE} s after the last call")
    windows = []  # CPU per call in each 10 s of traffic: shows a cost that grows with time

    def during(d, t0, extra):
        now = time.monotonic() - t0
        if not windows or now - windows[-1][0] >= 10:
            windows.append((now, t.cpu()))

    try:
        r = sipp_traffic(t, "cpu", CPU_RATE, calls, HOLD_MS, SETTLE, during=during)
    finally:
        t.stop("cpu")
    trace = [f"{(c1 - c0) / TICK / (w1 - w0) / CPU_RATE * 1e6:.0f}"
             for (w0, c0), (w1, c1) in zip(windows, windows[1:])]
    log(f"[cpu] {kind}: {describe(r)}")
    log(f"[cpu] {kind}: CPU {r['cpu_s']:.2f} s ({r['cpu_traffic_s']:.2f} s while calls ran), "
        f"idle before {r['idle_per_s'] * 1000:.1f} ms/s, "
        f"{per_call_us(r):.0f} us per complete call; sipp used {r['sipp_cpu_s']:.1f} s")
    log(f"[cpu] {kind}: us per call in successive 10 s windows: {' '.join(trace)}")
    return r


def rate_search(scratch, uas_port, cpu_result):
    best, steps = None, []
    rates = list(RATES)
    if cpu_result and cpu_result["rate"] in rates and cpu_result["clean"] and cpu_result["on_time"]:
        best = cpu_result["rate"]
        steps.append(cpu_result)
        rates = [x for x in rates if x > best]
        log(f"[rate] {best} calls/s for {DURATION} s: passed in the CPU step")
    elif cpu_result and cpu_result["rate"] in rates:
        rates = [x for x in rates if x < cpu_result["rate"]] or [x for x in LOW_RATES]
    for rate in rates:
        t = Target("qrxferd", scratch, uas_port)
        t.start(f"rate{rate}")
        try:
            r = sipp_traffic(t, f"rate{rate}", rate, rate * DURATION, HOLD_MS, 2)
        finally:
            t.stop(f"rate{rate}")
        steps.append(r)
        ok = r["clean"] and r["on_time"]
        log(f"[rate] {rate} calls/s for {DURATION} s: {'PASS' if ok else 'FAIL'}: {describe(r)}; "
            f"{per_call_us(r):.0f} us CPU/call while running")
        if not ok:
            if not r["on_time"]:
                log(f"[rate]   calls took {r['wall']:.1f} s instead of ~{DURATION + HOLD_MS / 1000:.0f} s:"
                    f" the rate was not kept")
            if best is None and rate == rates[0]:
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


def held_step(scratch, uas_port):
    t = Target("qrxferd", scratch, uas_port)
    t.start("held")
    rate = HELD_RATE
    fill = HELD / rate
    hold_ms = int((fill + 25) * 1000)
    log(f"[rss] {HELD} calls set up at {rate} calls/s, each held {hold_ms / 1000:.0f} s")
    rss0 = rss_kib(t.proc.pid)
    peak = {"up": 0, "rss": rss0, "t": None}

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
                extra["rss_kib"] = rss_kib(t.proc.pid)
                extra["up"] = up
                extra["at_s"] = now
                extra["done"] = True

    try:
        r = sipp_traffic(t, "held", rate, HELD, hold_ms, 0, limit=HELD, during=during)
    finally:
        t.stop("held")
    log(f"[rss] {describe(r)}")
    if "rss_kib" not in r or not r.get("up"):
        log("[rss] no plateau reached: no RSS figure")
        return None
    grow = r["rss_kib"] - rss0
    per = grow / r["up"]
    log(f"[rss] VmRSS {rss0} KiB before, {r['rss_kib']} KiB with {r['up']} calls up "
        f"(at {r['at_s']:.0f} s): {per:.1f} KiB per held call")
    return {"rss0": rss0, "rss1": r["rss_kib"], "up": r["up"], "per": per, "r": r}


def main():
    for p, what in ((QRXFERD, "qrxferd"), (os.path.join(MODDIR, MODULE), "module")):
        if not os.path.exists(p):
            sys.exit(f"bench: {what} {p} not built (run make first)")
    scratch = tempfile.mkdtemp(prefix="qrx-bench.")
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    start = time.monotonic()
    load0 = os.getloadavg()
    log(f"qrxfer bench ({'QUICK, ' if QUICK else ''}{DURATION} s per step) on {os.cpu_count()} "
        f"CPUs shared by qrxferd/Kamailio AND both SIPp instances; load average at start "
        f"{load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")
    log(f"qrxferd {QRXFERD} ({MODULE}, log level {LOGLEVEL}); {KAMAILIO}; {SIPP}; scratch {scratch}")
    out = {}
    try:
        uas_port = free_port(2)
        out["q"] = cpu_step("qrxferd", scratch, uas_port)
        out["k"] = cpu_step("kamailio", scratch, uas_port)
        out["best"], out["steps"] = rate_search(scratch, uas_port, out["q"])
        out["held"] = held_step(scratch, uas_port)
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
        f"{(time.monotonic() - start) / 60:.1f} min")
    q, k = out.get("q"), out.get("k")
    if q and k:
        qc, kc = per_call_us(q), per_call_us(k)
        ratio = qc / kc if kc else float("nan")
        log(f"CPU per complete call at {CPU_RATE} calls/s ({CPU_RATE * DURATION} calls, hold "
            f"{HOLD_MS} ms): qrxferd {qc:.0f} us ({q['ok']} ok, {q['failed']} failed), "
            f"Kamailio 5.6 tm+rr+dialog {kc:.0f} us ({k['ok']} ok, {k['failed']} failed)")
        log(f"  ratio qrxferd/Kamailio = {ratio:.2f}x   (goal <= {GOAL_CPU_RATIO:.1f}x: "
            f"{'met' if ratio <= GOAL_CPU_RATIO else 'NOT met'})")
    if "best" in out:
        best = out["best"]
        log(f"highest rate sustained {DURATION} s with 0 failed calls: "
            f"{best if best else 'none of the rates tried'} calls/s   (goal {GOAL_RATE} calls/s for 60 s:"
            f" {'met' if best and best >= GOAL_RATE and DURATION >= 60 else 'NOT met'}"
            f"{'; quick mode, not a 60 s figure' if DURATION < 60 else ''})")
    held = out.get("held")
    if held:
        log(f"RSS per held call: {held['per']:.1f} KiB ({held['up']} calls up, VmRSS "
            f"{held['rss0']} -> {held['rss1']} KiB)   (goal < {GOAL_RSS_KIB} KiB: "
            f"{'met' if held['per'] < GOAL_RSS_KIB else 'NOT met'}"
            f"{'' if held['up'] >= 10000 else '; only %d calls, not 10,000' % held['up']})")
    elif "held" in out:
        log("RSS per held call: no figure (the held calls never reached a plateau)")
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
