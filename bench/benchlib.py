"""Helpers the bench drivers share: free loopback ports, an OPTIONS probe, child processes
that are always stopped, SIPp's statistics files, and what a process costs (CPU, context
switches, memory from /proc; syscalls through perf)."""
import csv
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

live = []  # Popen objects started here, stopped on exit


def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


def free_port(span=1):
    for _ in range(5000):
        base = random.randrange(20000, 60000 - span, 2)
        ok = True
        for p in range(base, base + span):
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                s = socket.socket(socket.AF_INET, kind)
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                finally:
                    s.close()
        if ok:
            return base
    sys.exit("bench: no free port")


def sip_ping(port, seconds):
    """OPTIONS over UDP until any answer; True when answered."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    me = s.getsockname()[1]
    deadline = time.monotonic() + seconds
    n = 0
    try:
        while time.monotonic() < deadline:
            n += 1
            msg = (
                f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-b{n}-{me};rport\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:bench@127.0.0.1:{me}>;tag=b{me}\r\n"
                f"To: <sip:127.0.0.1:{port}>\r\nCall-ID: bench-ping-{me}-{n}\r\n"
                f"CSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
            s.sendto(msg.encode(), ("127.0.0.1", port))
            s.settimeout(0.3)
            try:
                s.recvfrom(65536)
                return True
            except (socket.timeout, ConnectionRefusedError):
                time.sleep(0.1)
    finally:
        s.close()
    return False


def spawn(argv, logpath, cwd):
    with open(logpath, "ab") as f:
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             cwd=cwd, start_new_session=True)
    live.append(p)
    return p


def stop(p, sig=signal.SIGTERM, wait=10.0):
    """Signal p, wait for it; its exit status, or None when it had to be killed."""
    rc = p.poll()
    if rc is None:
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            rc = p.wait(wait)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
            rc = None
    if p in live:
        live.remove(p)
    return rc


def cleanup():
    for p in list(live):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    live.clear()


def last_row(path):
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f, delimiter=";") if r]
    except OSError:
        return {}
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1]))


def stat_int(row, key):
    try:
        return int(row.get(key, "0") or 0)
    except ValueError:
        return 0


def udp_drops(port):
    """Datagrams the kernel dropped at sockets bound to 127.0.0.1:port (receive queue full)."""
    want = f"0100007F:{port:04X}"
    n = 0
    try:
        with open("/proc/net/udp") as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[1] == want:
                    n += int(parts[-1])
    except OSError:
        pass
    return n


# ---- what a process costs: /proc and perf ----

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
    """utime+stime summed over pids (all threads of each, live or exited), in clock ticks."""
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


def _status_fields(path, names):
    out = dict.fromkeys(names, 0)
    try:
        with open(path) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in out:
                    out[k] = int(v.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def ctx_switches(pids):
    """(voluntary, involuntary) context switches summed over every live thread of pids.

    /proc/PID/status counts the main thread only, so each /proc/PID/task/TID/status is read;
    a thread that has already exited is no longer counted."""
    vol = invol = 0
    for p in pids:
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tids:
            f = _status_fields(f"/proc/{p}/task/{t}/status",
                               ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"))
            vol += f["voluntary_ctxt_switches"]
            invol += f["nonvoluntary_ctxt_switches"]
    return vol, invol


def rss_kib(pid):
    """VmRSS of one process, KiB."""
    return _status_fields(f"/proc/{pid}/status", ("VmRSS",))["VmRSS"]


def pss_kib(pids):
    """Pss summed over pids, KiB: each page shared by n of them counts 1/n in each, so pages
    of a shared memory segment (Kamailio's shm pool) or of a library count once in the sum.
    Also returns the Pss_Shmem part (the shared memory segments) and the plain VmRSS sum."""
    pss = shm = rss = 0
    for p in pids:
        f = _status_fields(f"/proc/{p}/smaps_rollup", ("Pss", "Pss_Shmem", "Rss"))
        pss += f["Pss"]
        shm += f["Pss_Shmem"]
        rss += f["Rss"]
    return pss, shm, rss


PERF = shutil.which("perf")
SYSCALL_EVENT = "raw_syscalls:sys_enter"


def perf_probe():
    """(True, version) when `perf stat -e raw_syscalls:sys_enter` counts here, else
    (False, why)."""
    if os.environ.get("BENCH_SYSCALLS", "1") == "0":
        return False, "BENCH_SYSCALLS=0"
    if not PERF:
        return False, "perf missing"
    try:
        p = subprocess.run([PERF, "stat", "-x,", "-e", SYSCALL_EVENT, "--", "true"],
                           capture_output=True, text=True, timeout=30)
        v = subprocess.run([PERF, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"perf: {e}"
    for line in p.stderr.splitlines():
        f = line.split(",")
        if len(f) > 2 and f[2] == SYSCALL_EVENT and f[0].strip().isdigit():
            return True, (v.stdout.strip() or "perf")
    errors = [" ".join(ln.split()) for ln in p.stderr.splitlines()
              if ln.strip().startswith("Error:")]
    why = errors[0] if errors else " ".join(p.stderr.split())[:160]
    why = why or f"exit status {p.returncode}"
    return False, f"perf: {why}"


class SyscallCounter:
    """Counts the syscalls entered by pids (all their threads, and threads created later)
    with `perf stat -I 100 -e raw_syscalls:sys_enter -p PIDS`, summed over pids: the kernel
    counts each syscall entry at the tracepoint; nothing is sampled or copied out.

    count(a, b) is the number of syscalls between two time.monotonic() instants, to within
    the 100 ms of perf's intervals."""

    INTERVAL_MS = 100

    def __init__(self, pids, path, logpath, cwd):
        self.path = path
        self.t0 = None
        self.rows = []  # (monotonic start, monotonic end, count) of each interval
        self.error = None
        self.proc = spawn([PERF, "stat", "-x,", "-I", str(self.INTERVAL_MS), "-e", SYSCALL_EVENT,
                           "-p", ",".join(str(p) for p in pids), "-o", path], logpath, cwd)
        # perf's interval stamps count from when it enabled the counters: the first stamp
        # seen, taken from the clock when its line appears, places them on ours
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            rows = self._parse()
            if rows:
                self.t0 = time.monotonic() - rows[0][0]
                return
            time.sleep(0.01)
        self.error = f"perf stat gave no count (exit status {self.proc.poll()}; see {logpath})"

    def _parse(self):
        rows = []
        try:
            with open(self.path) as f:
                for line in f:
                    fl = line.strip().split(",")
                    if len(fl) < 4 or fl[3] != SYSCALL_EVENT:
                        continue
                    try:
                        ts = float(fl[0])
                    except ValueError:
                        continue
                    # "<not counted>": none of the threads ran in that interval
                    rows.append((ts, int(fl[1]) if fl[1].strip().isdigit() else 0))
        except OSError:
            pass
        return rows

    def stop(self):
        if self.proc is not None:
            stop(self.proc, signal.SIGINT, 10.0)
            self.proc = None
        if self.t0 is not None:
            prev, self.rows = 0.0, []
            for ts, n in self._parse():
                self.rows.append((self.t0 + prev, self.t0 + ts, n))
                prev = ts

    def count(self, a, b):
        """Syscalls in the intervals whose middle lies in [a, b); None when not counted."""
        if self.t0 is None:
            return None
        return sum(n for s, e, n in self.rows if a <= (s + e) / 2 < b)
