#!/usr/bin/env python3
"""dialog-flood.py SIP_PORT HTTP_PORT TOKEN_FILE: requests in made-up dialogs, as a stranger
sends them to make qrxferd ask its store about each (a lookup that finds nothing).

Three floods of BYEs with random Call-IDs and tags, over UDP to 127.0.0.1:SIP_PORT:
  1. 400 from 127.0.0.1: every one is answered 481; the lookups that source got are at most
     its burst (100) plus what its rate (20/s) refilled meanwhile; the rest are counted refused
     (qrxfer_sip_unknown_dialogs_refused_total).
  2. 5 from 127.0.0.2, a source that sent nothing yet: all 481, none refused (budgets are per
     source: the first flood spent 127.0.0.1's, not this one's).
  3. 99 each from 127.0.0.3 .. 127.0.0.17 (1,485, each under its own burst): all 481, and some
     refused by the budget in all (1,000, 200/s), which spoofed sources cannot multiply (checked
     when more was sent than that budget can have refilled since the first flood).
Prints nothing when all of that holds, else one " why;" per finding (run.sh's verdict); exits 0.
"""
import random
import socket
import sys
import time
import urllib.request

SIP, HTTP, TOKEN = int(sys.argv[1]), int(sys.argv[2]), open(sys.argv[3]).read().strip()
METRIC = "qrxfer_sip_unknown_dialogs_refused_total"
why = []


def refused():
    req = urllib.request.Request(f"http://127.0.0.1:{HTTP}/metrics",
                                 headers={"Authorization": "Bearer " + TOKEN})
    for line in urllib.request.urlopen(req, timeout=5).read().decode().splitlines():
        if line.split(" ")[0] == METRIC:
            return int(line.split(" ")[1])
    why.append(f" {METRIC} missing from /metrics;")
    return 0


def bye(src, port, n):
    cid = "%032x@flood.test" % random.getrandbits(128)
    return (f"BYE sip:near@127.0.0.1:{SIP} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {src}:{port};branch=z9hG4bK{random.getrandbits(64):x}\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <sip:stranger@{src}>;tag={random.getrandbits(32):x}\r\n"
            f"To: <sip:near@127.0.0.1>;tag={random.getrandbits(32):x}\r\n"
            f"Call-ID: {cid}\r\nCSeq: {n + 2} BYE\r\nContent-Length: 0\r\n\r\n").encode()


def flood(src, count):
    """Sends count BYEs from src at once, then collects the answers; (statuses, seconds)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    s.bind((src, 0))
    port = s.getsockname()[1]
    s.settimeout(0.2)
    statuses, t0 = [], time.monotonic()
    for n in range(count):
        s.sendto(bye(src, port, n), ("127.0.0.1", SIP))
    deadline = t0 + 30
    while len(statuses) < count and time.monotonic() < deadline:
        try:
            data = s.recv(65535)
        except socket.timeout:
            continue
        line = data.split(b"\r\n", 1)[0].split(b" ")
        if len(line) > 1 and line[1].isdigit() and int(line[1]) >= 200:
            statuses.append(int(line[1]))
    s.close()
    return statuses, time.monotonic() - t0


def expect_481(what, statuses, count):
    if len(statuses) != count:
        why.append(f" {what}: {len(statuses)} of {count} answered;")
    other = [c for c in statuses if c != 481]
    if other:
        why.append(f" {what}: answered {sorted(set(other))}, not 481;")


SOURCES = 15
T0 = time.monotonic()
r0 = refused()
st, secs = flood("127.0.0.1", 400)
expect_481("flood from 127.0.0.1", st, 400)
r1 = refused()
looked_up = 400 - (r1 - r0)
if looked_up > 100 + 20 * secs + 1:
    why.append(f" 127.0.0.1 got {looked_up} lookups in {secs:.1f} s, over its budget;")
if r1 == r0:
    why.append(" nothing refused after 400 made-up dialogs from one source;")

st, _ = flood("127.0.0.2", 5)
expect_481("5 from 127.0.0.2", st, 5)
r2 = refused()
if r2 != r1:
    why.append(f" {r2 - r1} of 5 from a fresh source refused: budgets are not per source;")

# Every source under its own burst; in all more than the budget in all can have refilled.
st = []
for i in range(3, 3 + SOURCES):
    got, _ = flood(f"127.0.0.{i}", 99)
    st += got
expect_481(f"99 each from {SOURCES} sources", st, 99 * SOURCES)
r3 = refused()
spent = 400 - (r1 - r0) + 5 + 99 * SOURCES  # every lookup before, at most
if r3 == r2 and spent > 1000 + 200 * (time.monotonic() - T0):
    why.append(f" {99 * SOURCES} made-up dialogs from {SOURCES} sources (each under its "
               "burst): none refused;")
print("".join(why), end="")
