#!/usr/bin/env python3
"""What one relayed REGISTER costs qrxferd, in instructions (callgrind), by part. Run through
`make bench-own-cost`; see bench/README.md.

qrxferd runs under valgrind's callgrind (SQLite store, its binding table kept) in front of
Kamailio (bench/own-pbx.cfg, the registrar); SIPp (bench/own-reg.xml) sends BENCH_OWN_COST_N
REGISTERs, one new user each, at BENCH_OWN_COST_RATE a second. The counters are zeroed once
qrxferd answers OPTIONS and dumped 2 s after the last answer (the binding batch has landed), so
the figure is the REGISTERs' and the loop's idle turns meanwhile. Instructions do not move with
the machine's load as CPU time does: before/after figures of a change compare. Prints the
instructions a REGISTER in all and inclusive of the parts: the SIP relay (the REGISTER out, the
answer back), the registered hook (the binding job), the store's batching on the loop, and the
store worker (the upserts, SQLite, the commit).
Environment: QRXFERD, QRXFER_MODULE_DIR, QRXFER_MODULE, SIPP, KAMAILIO, BENCH_OWN_COST_N [2000],
BENCH_OWN_COST_RATE [100], BENCH_KEEP.
"""
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from benchlib import cleanup, env_int, free_port, last_row, sip_ping, spawn, stat_int, stop

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_BUILD = os.environ.get("top_builddir") or os.getcwd()
QRXFERD = os.environ.get("QRXFERD") or os.path.join(TOP_BUILD, "qrxferd")
MODDIR = os.environ.get("QRXFER_MODULE_DIR") or os.path.join(TOP_BUILD, ".libs")
MODULE = os.environ.get("QRXFER_MODULE") or "mod_qrxfer.so"
SIPP = os.environ.get("SIPP") or shutil.which("sipp") or "sipp"
KAMAILIO = os.environ.get("KAMAILIO") or shutil.which("kamailio") or "kamailio"
N = env_int("BENCH_OWN_COST_N", 2000)
RATE = env_int("BENCH_OWN_COST_RATE", 100)
# the parts, by the function whose inclusive cost is the part's
PARTS = [
    ("SIP relay: REGISTER in and out (relay_out_of_dialog)", "relay_out_of_dialog"),
    ("SIP relay: the answer back (txn_answer, with the hook)", "txn_answer"),
    ("registered hook: the binding's job (hook_registered)", "hook_registered"),
    ("store batching on the loop (store_submit_later)", "store_submit_later"),
    ("store worker: its jobs (node_work)", "node_work"),
    ("  of which the upserts (store_binding_put)", "store_binding_put"),
    ("  of which the commits (store_tx_end)", "store_tx_end"),
    ("SIP in: datagrams read and parsed, with all they led to (tport_recv_event)",
     "tport_recv_event"),
]


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    if not shutil.which("valgrind") or not shutil.which("callgrind_annotate"):
        print("bench-own-cost: valgrind not found (Debian package valgrind)")
        return 1
    scratch = tempfile.mkdtemp(prefix="qrx-bench-own-cost-")
    keep = os.environ.get("BENCH_KEEP")
    qport, kport = free_port(1), free_port(1)
    db = os.path.join(scratch, "qrxfer.db")
    with open(os.path.join(HERE, "own-pbx.cfg")) as f:
        kcfg = f.read().replace("@PORT@", str(kport))
    with open(os.path.join(scratch, "kamailio.cfg"), "w") as f:
        f.write(kcfg)
    with open(os.path.join(scratch, "admin.token"), "w") as f:
        f.write("bench-own-cost-%016x\n" % random.getrandbits(64))
    conf = os.path.join(scratch, "qrxfer.conf")
    with open(conf, "w") as f:
        f.write(f"[module]\nload = {MODULE}\n[log]\nlevel = info\n"
                f"[sip]\nlisten = sip:127.0.0.1:{qport}\ndomain = qrxfer.test\n"
                f"upstream = sip:127.0.0.1:{kport}\n[http]\nlisten =\n"
                f"admin_token_file = {scratch}/admin.token\n"
                f"[store]\nurl = sqlite://{db}\n[codes]\nhmac_key_file = {scratch}/hmac.key\n")
    out = os.path.join(scratch, "callgrind.out")
    status = 1
    try:
        os.makedirs(os.path.join(scratch, "kamrun"))
        spawn([KAMAILIO, "-f", os.path.join(scratch, "kamailio.cfg"), "-Y",
               os.path.join(scratch, "kamrun"), "-DD", "-E", "-m", "128"],
              os.path.join(scratch, "kamailio.log"), scratch)
        d = spawn(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                   "--separate-threads=no", QRXFERD, "-c", conf, "-M", MODDIR],
                  os.path.join(scratch, "qrxferd.log"), scratch)
        if not sip_ping(qport, 90) or not sip_ping(kport, 15):
            raise RuntimeError("qrxferd or kamailio not answering OPTIONS")
        time.sleep(1.0)
        subprocess.run(["callgrind_control", "-z", str(d.pid)], capture_output=True, timeout=60)
        p = spawn([SIPP, "-sf", os.path.join(HERE, "own-reg.xml"), f"127.0.0.1:{qport}",
                   "-key", "pfx", "cost", "-p", str(free_port(1)), "-r", str(RATE), "-m", str(N),
                   "-l", str(N), "-stf", os.path.join(scratch, "reg.csv"), "-timeout",
                   f"{N // max(RATE, 1) * 4 + 60}s", "-i", "127.0.0.1", "-nostdin", "-t", "u1",
                   "-trace_stat", "-fd", "1"], os.path.join(scratch, "reg.out"), scratch)
        p.wait()
        time.sleep(2.0)
        subprocess.run(["callgrind_control", "-d", str(d.pid)], capture_output=True, timeout=120)
        ok = stat_int(last_row(os.path.join(scratch, "reg.csv")), "SuccessfulCall(C)")
        dumps = sorted((x for x in os.listdir(scratch) if x.startswith("callgrind.out.")),
                       key=lambda x: os.path.getmtime(os.path.join(scratch, x)))
        if not dumps or not ok:
            raise RuntimeError(f"no dump ({dumps}) or no REGISTER answered ({ok})")
        ann = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100",
                              os.path.join(scratch, dumps[-1])], capture_output=True,
                             text=True, timeout=300).stdout
        total = re.search(r"^([\d,]+)\s.*PROGRAM TOTALS", ann, re.M)
        total = int(total.group(1).replace(",", "")) if total else 0
        print(f"[cost] {ok} of {N} REGISTERs answered 200 at {RATE}/s under callgrind: "
              f"{total / ok / 1000:.1f}k instructions a REGISTER in all", flush=True)
        for name, fn in PARTS:
            m = re.search(r"^\s*([\d,]+)\s.*[:\s]" + re.escape(fn) + r"(?:\s|'|$)", ann, re.M)
            v = int(m.group(1).replace(",", "")) / ok / 1000 if m else float("nan")
            print(f"  {name}: {v:.1f}k", flush=True)
        stop(d, signal.SIGTERM, 60)
        status = 0
    finally:
        cleanup()
        if keep:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
