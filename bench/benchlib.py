"""Helpers the bench drivers share: free loopback ports, an OPTIONS probe, child processes
that are always stopped, SIPp's statistics files."""
import csv
import os
import random
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
