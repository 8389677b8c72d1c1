#!/usr/bin/env python3
"""RFC 4475 torture driver for qrxferd (used by tests/torture/torture.test).

  torture.py --plan DIR
      print the messages in rounds, one round per line: no two requests of a round share
      a transaction key (top Via branch + sent-by + method), so none is taken for a
      retransmission of another; each round runs against a fresh qrxferd.
  torture.py --transport udp|tcp --sip-port P --up-port U --pid PID DIR FILE...
      send each message byte-exact to 127.0.0.1:P, play the upstream on U (UDP and TCP:
      answers INVITE 486, other requests 200, and records what qrxferd forwards), check the
      outcome against the RFC's expectation for the message, and after every message check
      that qrxferd still runs and answers OPTIONS. Prints PASS/FAIL lines; exit 1 on a FAIL.

Nothing in a message is rewritten. Over UDP, RFC 3261 18.2.2 sends the response to the top
Via's sent-by port (5060 when absent; rport only if the message asks), not to the source
port, so the message is sent from a socket bound to 127.0.0.1:<that port> (with a TCP
listener there too, for a Via naming TCP). All those ports are bound before the first message
and held until the end; a message whose Via port cannot be bound FAILs (its answer could not
be observed, so nothing would be checked). qrxferd's own ports must not be among them.

"Accepted" means forwarded (the upstream got the request) or one of the 2xx/4xx answers
listed for that message; a 5xx is never an acceptance (a 5xx is in a message's list only
where RFC 4475 itself asks for it: 501 to an unknown method, 505 to an unknown version).

The one rewrite: the top Via's transport token is set to the transport the message is sent
on (UDP or TCP) when it names another one (most messages name UDP, some TCP or TLS). sofia-sip's
nta silently discards a request whose top Via names another transport than the one it came
on ("nta: Via check: invalid transport"), so as-is those would test nothing but that check.

Known deviations (KNOWN below): verdicts that Debian's sofia-sip 1.12.11 message parser makes
before qrxferd sees the message (it drops or closes where RFC 4475 asks for 400, and it cannot
parse the valid intmeth.dat). They print as XFAIL with the reason and do not fail the test;
if one starts to behave as the RFC asks it prints XPASS and fails, so the table is kept true.
"""
import os
import random
import re
import select
import socket
import sys
import time

WAIT = 1.5  # seconds to wait for a verdict once nothing more is expected
SIP_HOST = "127.0.0.1"

# Per message: the outcomes RFC 4475 allows, for UDP and TCP. An outcome is a final status
# code sent back to us, "fwd" (qrxferd passed the request on to the upstream), "drop" (no
# final response and nothing forwarded), or "closed" (TCP connection closed, no final).
# None: a response message; it is only sent, qrxferd must survive it.


def accept(*codes):
    '''Taken as well-formed: forwarded, or answered with one of CODES (2xx, 4xx but 400).'''
    for c in codes:
        assert 200 <= c < 300 or (400 < c < 500), "not an acceptance: %d" % c
    return frozenset({"fwd"} | set(codes))


ACCEPT = accept()
EXPECT = {
    # 3.1.1 valid messages: accepted (passed on, or the listed answer), never 400 nor 5xx.
    # wsinv: an INVITE with a To tag for no dialog we know: 481 is the right answer.
    "wsinv.dat": (accept(481), accept(481)),
    "intmeth.dat": (ACCEPT, ACCEPT),
    "esc01.dat": (ACCEPT, ACCEPT),
    "escnull.dat": (ACCEPT, ACCEPT),
    # An unknown method: RFC 4475 3.1.1.5 asks an endpoint for 501 (not an acceptance).
    "esc02.dat": (ACCEPT | {501}, ACCEPT | {501}),
    # OPTIONS: qrxferd answers them itself.
    "lwsdisp.dat": (accept(200), accept(200)),
    "longreq.dat": (ACCEPT, ACCEPT),
    "dblreq.dat": (ACCEPT, ACCEPT),
    "semiuri.dat": (accept(200), accept(200)),
    "transports.dat": (accept(200), accept(200)),
    "mpart01.dat": (ACCEPT, ACCEPT),
    "unreason.dat": None,
    "noreason.dat": None,
    # 3.1.2 invalid messages.
    "badinv01.dat": ({400}, {400}),
    # Over TCP the message is merely incomplete (Content-Length beyond the data).
    "clerr.dat": ({400}, {400, "drop", "closed"}),
    "ncl.dat": ({400, "drop"}, {400, "drop", "closed"}),
    "scalar02.dat": ({400}, {400}),
    "scalarlg.dat": None,
    "quotbal.dat": ({400} | ACCEPT, {400} | ACCEPT),
    "ltgtruri.dat": ({400, "fwd"}, {400, "fwd"}),
    "lwsruri.dat": ({400}, {400}),
    "lwsstart.dat": ({400} | ACCEPT, {400} | ACCEPT),
    "trws.dat": ({400} | accept(200), {400} | accept(200)),  # OPTIONS
    "escruri.dat": ({400} | ACCEPT, {400} | ACCEPT),
    "baddate.dat": ({400} | ACCEPT, {400} | ACCEPT),
    "regbadct.dat": ({400} | ACCEPT, {400} | ACCEPT),
    "badaspec.dat": ({400} | accept(200), {400} | accept(200)),  # OPTIONS
    "baddn.dat": ({400}, {400}),
    "badvers.dat": ({505}, {505}),
    "mismatch01.dat": ({400}, {400}),
    "mismatch02.dat": ({501, 400}, {501, 400}),
    "bigcode.dat": None,
    # 3.2 transaction layer.
    "badbranch.dat": ({400} | accept(200), {400} | accept(200)),  # OPTIONS
    # 3.3 application layer.
    "insuf.dat": ({400}, {400}),
    "unkscm.dat": ({416}, {416}),
    "novelsc.dat": ({416, 404}, {416, 404}),
    "unksm2.dat": ({400, "fwd"}, {400, "fwd"}),
    "bext01.dat": ({420}, {420}),
    "invut.dat": ({415, "fwd"}, {415, "fwd"}),
    "regaut01.dat": ({401, 405, "fwd"}, {401, 405, "fwd"}),
    "multi01.dat": ({400}, {400}),
    "mcl01.dat": ({400, "drop"}, {400, "drop", "closed"}),
    "bcast.dat": None,
    # Proxy: 483; an endpoint may answer OPTIONS itself; never pass it on with Max-Forwards 0.
    "zeromf.dat": ({483, 200}, {483, 200}),
    "cparam01.dat": ({"fwd"}, {"fwd"}),
    "cparam02.dat": ({"fwd"}, {"fwd"}),
    "regescrt.dat": ({"fwd"}, {"fwd"}),
    "sdp01.dat": ({406, 400, "fwd"}, {406, 400, "fwd"}),
    # 3.4: RFC 2543 syntax. No Content-Length: over TCP the message cannot be framed
    # (RFC 3261 18.3), so anything but a crash is allowed there.
    "inv2543.dat": (ACCEPT, ACCEPT | {400, "drop", "closed"}),
    "test.dat": None,
}

# What the RFC text asks, for the FAIL message.
WHY = {}

# (transport, file): (the outcome sofia-sip 1.12.11 produces, why). See the docstring.
KNOWN = {
    ("udp", "badinv01.dat"): ("drop", "sofia-sip's parser discards the extraneous separators' message"),
    ("tcp", "badinv01.dat"): ("closed", "sofia-sip's parser closes the connection on it"),
    ("udp", "lwsruri.dat"): ("drop", "sofia-sip's parser discards a Request-URI with LWS"),
    ("tcp", "lwsruri.dat"): ("drop", "sofia-sip's parser discards a Request-URI with LWS"),
    ("udp", "intmeth.dat"): ("drop", "sofia-sip's URI parser rejects the valid unusual user part"),
    ("tcp", "intmeth.dat"): ("drop", "sofia-sip's URI parser rejects the valid unusual user part"),
    ("tcp", "baddn.dat"): ("drop", "sofia-sip drops it over TCP (over UDP it answers 400)"),
    ("udp", "badvers.dat"): ("drop", "sofia-sip sends the 505 to the Via host by name, not to the source"),
}


def load_manifest(d):
    with open(os.path.join(d, "MANIFEST.tsv"), encoding="utf-8") as f:
        next(f)
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) >= 5:
                WHY[p[0]] = "RFC 4475 %s (%s): %s" % (p[1], p[3], p[4])


def split_msg(raw):
    """Head lines (unfolded, latin-1) and body of one message."""
    i = raw.find(b"\r\n\r\n")
    head, body = (raw, b"") if i < 0 else (raw[:i], raw[i + 4:])
    lines = []
    for ln in head.decode("latin-1").split("\r\n"):
        if ln[:1] in (" ", "\t") and lines:
            lines[-1] += " " + ln.strip()
        else:
            lines.append(ln)
    return lines, body


def header(lines, *names):
    for ln in lines[1:]:
        n, _, v = ln.partition(":")
        if n.strip().lower() in names:
            return v.strip()
    return None


def headers(lines, *names):
    out = []
    for ln in lines[1:]:
        n, _, v = ln.partition(":")
        if n.strip().lower() in names:
            out.append(v.strip())
    return out


def is_response(raw):
    return raw.startswith(b"SIP/")


def via_info(raw):
    """(sent-by port, branch, sent-by) of the top Via; port 5060 when absent."""
    lines, _ = split_msg(raw)
    v = header(lines, "via", "v") or ""
    m = re.match(r"SIP\s*/\s*[\d.]+\s*/\s*\w+\s+([^;,\s]+)", v)
    sentby = m.group(1) if m else ""
    port = 5060
    pm = re.search(r":(\d+)$", sentby)
    if pm:
        port = int(pm.group(1))
    bm = re.search(r";\s*branch\s*=\s*([^;,\s]+)", v)
    return port, (bm.group(1) if bm else ""), sentby


def txn_key(raw):
    if is_response(raw):
        return None
    _, branch, sentby = via_info(raw)
    method = raw.split(b" ", 1)[0]
    return (branch, sentby, method)


def plan(d):
    files = sorted(f for f in os.listdir(d) if f.endswith(".dat"))
    rounds = []
    for f in files:
        k = txn_key(open(os.path.join(d, f), "rb").read())
        for r in rounds:
            if k is None or k not in r[1]:
                r[0].append(f)
                r[1].add(k)
                break
        else:
            rounds.append(([f], {k}))
    for r in rounds:
        print(" ".join(r[0]))


def frame(buf):
    """Split one message off a stream buffer: (msg, rest) or (None, buf)."""
    i = buf.find(b"\r\n\r\n")
    if i < 0:
        return None, buf
    lines, _ = split_msg(buf[:i])
    cl = header(lines, "content-length", "l")
    try:
        n = int(cl) if cl is not None else 0
    except ValueError:
        n = 0
    end = i + 4 + max(n, 0)
    if len(buf) < end:
        return None, buf
    return buf[:end], buf[end:]


def status_of(raw):
    m = re.match(rb"SIP/2\.0 (\d{3}) ", raw)
    return int(m.group(1)) if m else None


def reply_for(req, code, phrase):
    lines, _ = split_msg(req)
    out = ["SIP/2.0 %d %s" % (code, phrase)]
    for v in headers(lines, "via", "v"):
        out.append("Via: " + v)
    out.append("From: " + (header(lines, "from", "f") or ""))
    to = header(lines, "to", "t") or ""
    if ";tag=" not in to.replace(" ", ""):
        to += ";tag=sink%d" % random.randint(1, 1 << 30)
    out.append("To: " + to)
    out.append("Call-ID: " + (header(lines, "call-id", "i") or ""))
    out.append("CSeq: " + (header(lines, "cseq") or ""))
    if code == 200 and req.startswith(b"REGISTER"):
        for c in headers(lines, "contact", "m"):
            out.append("Contact: " + c)
        for p in headers(lines, "path"):
            out.append("Path: " + p)
    out.append("Content-Length: 0")
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")


class Upstream:
    """The upstream on UDP and TCP port U: answers what qrxferd forwards, keeps it."""

    def __init__(self, port):
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((SIP_HOST, port))
        self.lsn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsn.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsn.bind((SIP_HOST, port))
        self.lsn.listen(16)
        self.conns = {}
        self.got = []

    def socks(self):
        return [self.udp, self.lsn] + list(self.conns)

    def handle(self, s):
        if s is self.udp:
            data, addr = self.udp.recvfrom(65536)
            self.request(data, lambda b: self.udp.sendto(b, addr))
        elif s is self.lsn:
            c, _ = self.lsn.accept()
            self.conns[c] = b""
        else:
            data = s.recv(65536)
            if not data:
                del self.conns[s]
                s.close()
                return
            buf = self.conns[s] + data
            while True:
                m, buf = frame(buf)
                if m is None:
                    break
                self.request(m, s.sendall)
            self.conns[s] = buf

    def request(self, m, send):
        if is_response(m):
            return
        method = m.split(b" ", 1)[0]
        if method == b"ACK":
            return
        self.got.append(m)
        if method == b"INVITE":
            send(reply_for(m, 486, "Busy Here"))
        else:
            send(reply_for(m, 200, "OK"))


class Catcher:
    """Where qrxferd's UDP responses go: 127.0.0.1:<Via port> (UDP, plus TCP for a Via
    that names TCP). None bound means the port was taken."""

    cache = {}

    @classmethod
    def get(cls, port):
        if port not in cls.cache:
            try:
                c = cls(port)
            except OSError:
                c = None
            cls.cache[port] = c
        return cls.cache[port]

    def __init__(self, port):
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((SIP_HOST, port))
        self.lsn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsn.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.lsn.bind((SIP_HOST, port))
            self.lsn.listen(4)
        except OSError:
            self.lsn.close()
            self.lsn = None
        self.conns = {}


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def ping(sip_port):
    """OPTIONS to qrxferd itself from an ephemeral port (rport): True on a 200."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((SIP_HOST, 0))
    lp = s.getsockname()[1]
    b = "z9hG4bK-ping%d" % random.randint(1, 1 << 30)
    msg = ("OPTIONS sip:%s:%d SIP/2.0\r\nVia: SIP/2.0/UDP %s:%d;branch=%s;rport\r\n"
           "Max-Forwards: 70\r\nFrom: <sip:probe@%s>;tag=p%d\r\nTo: <sip:%s:%d>\r\n"
           "Call-ID: %s@probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n") % (
               SIP_HOST, sip_port, SIP_HOST, lp, b, SIP_HOST, lp, SIP_HOST, sip_port, b)
    try:
        for attempt in range(4):
            s.sendto(msg.encode(), (SIP_HOST, sip_port))
            end = time.time() + 0.5 * (attempt + 1)
            while time.time() < end:
                r, _, _ = select.select([s], [], [], max(0, end - time.time()))
                if not r:
                    break
                data = s.recv(65536)
                if b + ";" in data.decode("latin-1") or b + "\r" in data.decode("latin-1"):
                    if status_of(data) == 200:
                        return True
        return False
    finally:
        s.close()


def call_id(raw):
    return header(split_msg(raw)[0], "call-id", "i")


def set_via_transport(raw, transport):
    """The message with its top Via's transport set to TRANSPORT (see the module comment)."""
    i = raw.find(b"\r\n\r\n")
    head, rest = (raw, b"") if i < 0 else (raw[:i], raw[i:])
    m = re.search(rb"(?im)^(via|v)[ \t]*:[ \t]*SIP[ \t\r\n]*/[ \t\r\n]*2\.0[ \t\r\n]*/"
                  rb"[ \t\r\n]*(UDP|TCP|TLS|SCTP)\b", head)
    if not m:
        return raw
    return head[:m.start(2)] + transport.upper().encode() + head[m.end(2):] + rest


def run_one(name, raw, transport, sip_port, up, unchecked):
    """Send one message; return (outcome, finals, forwarded messages, note)."""
    up.got = []
    cid = call_id(raw)
    finals = []
    provisional = []
    closed = False
    note = ""
    ends_early = not is_response(raw)
    if transport == "udp":
        port, _, _ = via_info(raw)
        c = Catcher.get(port)
        if c is None:
            note = "Via port %d cannot be bound: the answer cannot be observed" % port
            unchecked.append(name)
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tx.bind((SIP_HOST, 0))
            watch = []
        else:
            tx = c.udp
            watch = [c.udp] + ([c.lsn] if c.lsn else []) + list(c.conns)
        tx.sendto(raw, (SIP_HOST, sip_port))
    else:
        c = None
        tx = socket.create_connection((SIP_HOST, sip_port), timeout=2)
        tx.sendall(raw)
        watch = [tx]
        tcpbuf = b""
    # A response is only sent: give qrxferd a moment to choke on it, then move on.
    deadline = time.time() + (WAIT if ends_early else 0.3)
    hard = time.time() + 3 * WAIT
    while time.time() < min(deadline, hard):
        socks = watch + up.socks()
        r, _, _ = select.select(socks, [], [], max(0, min(deadline, hard) - time.time()))
        for s in r:
            if s in up.socks():
                n = len(up.got)
                up.handle(s)
                if len(up.got) > n:
                    deadline = time.time() + WAIT  # wait for the relayed answer
                continue
            msgs = []
            if transport == "udp" and s is c.udp:
                msgs.append(s.recv(65536))
            elif transport == "udp" and s is c.lsn:
                conn, _ = s.accept()
                c.conns[conn] = b""
                watch.append(conn)
            elif transport == "udp":
                data = s.recv(65536)
                if not data:
                    watch.remove(s)
                    del c.conns[s]
                    s.close()
                    continue
                buf = c.conns[s] + data
                while True:
                    m, buf = frame(buf)
                    if m is None:
                        break
                    msgs.append(m)
                c.conns[s] = buf
            else:
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    closed = True
                    watch.remove(s)
                    continue
                tcpbuf += data
                while True:
                    m, tcpbuf = frame(tcpbuf)
                    if m is None:
                        break
                    msgs.append(m)
            for m in msgs:
                st = status_of(m)
                # only answers to this message: not retransmitted answers to earlier ones
                if st is None or call_id(m) != cid:
                    continue
                if st >= 200:
                    finals.append(st)
                else:
                    provisional.append(st)
        if finals and ends_early:
            # a final came back; linger briefly for a forwarded copy, then stop
            deadline = min(deadline, time.time() + 0.2)
    if transport == "tcp":
        tx.close()
    elif c is None:
        tx.close()
    if up.got:
        outcome = "fwd"
    elif finals:
        outcome = finals[0]
    elif closed:
        outcome = "closed"
    else:
        outcome = "drop"
    return outcome, finals, provisional, list(up.got), note


def allowed(outcome, allow):
    return outcome in allow


def extra_checks(name, fwd, finals):
    """RFC 4475 demands on what is passed on, where the message names them."""
    errs = []
    for m in fwd:
        lines, _ = split_msg(m)
        rl = lines[0]
        if name == "ltgtruri.dat" and "<" in rl:
            errs.append("forwarded Request-URI still in <>: %r" % rl)
        if name in ("lwsstart.dat", "trws.dat") and not re.match(r"^\S+ \S+ SIP/2\.0$", rl):
            errs.append("forwarded request line keeps the extra SP: %r" % rl)
        if name == "escruri.dat":
            for v in headers(lines, "route"):
                if "example.com" in v:
                    errs.append("escaped URI header turned into a real Route: %r" % v)
        if name == "baddn.dat":
            errs.append("non-token display name propagated")
        if name == "zeromf.dat":
            errs.append("passed on with Max-Forwards 0")
        if name == "regescrt.dat":
            ct = " ".join(headers(lines, "contact", "m"))
            if not re.search(r"\?Route=%3Csip:sip\.example\.com%3E", ct, re.I):
                errs.append("escaped Route not kept in the Contact URI: %r" % ct)
            for v in headers(lines, "route"):
                if "sip.example.com" in v:
                    errs.append("escaped Route turned into a real Route header: %r" % v)
    if name in ("cparam01.dat", "cparam02.dat", "regescrt.dat") and fwd and 200 not in finals:
        errs.append("registrar's 200 not relayed (got %s)" % (finals or "no final"))
    return errs


def main(argv):
    if argv[1] == "--plan":
        plan(argv[2])
        return 0
    args = {}
    i = 1
    while argv[i].startswith("--"):
        args[argv[i][2:]] = argv[i + 1]
        i += 2
    d = argv[i]
    files = argv[i + 1:]
    load_manifest(d)
    transport = args["transport"]
    sip_port = int(args["sip-port"])
    pid = int(args["pid"])
    up = Upstream(int(args["up-port"]))
    failed = 0
    unchecked = []
    if transport == "udp":
        # Hold every Via port the messages name for the whole run (see the module comment).
        vports = sorted({via_info(open(os.path.join(d, f), "rb").read())[0] for f in files})
        clash = {sip_port, int(args["up-port"])} & set(vports)
        if clash:
            print("FAIL %s: qrxferd's ports %s are Via ports of the messages %s" % (
                transport, sorted(clash), vports))
            return 1
        for p in vports:
            if Catcher.get(p) is None:
                print("NOTE %s: Via port %d cannot be bound on %s: its messages will FAIL" % (
                    transport, p, SIP_HOST))
    for name in files:
        raw = open(os.path.join(d, name), "rb").read()
        sent = set_via_transport(raw, transport)
        rewritten = sent != raw
        raw = sent
        if name not in EXPECT:
            print("FAIL %s %s: no expectation in torture.py" % (transport, name))
            failed += 1
            continue
        exp = EXPECT[name]
        try:
            outcome, finals, prov, fwd, note = run_one(name, raw, transport, sip_port, up,
                                                       unchecked)
        except OSError as e:
            outcome, finals, prov, fwd, note = "error", [], [], [], "socket error: %s" % e
        seen = "outcome=%s finals=%s prov=%s" % (outcome, finals, prov)
        if rewritten:
            seen += " (top Via transport set to %s)" % transport.upper()
        if fwd:
            seen += " forwarded=%r" % split_msg(fwd[0])[0][0][:100]
        dump = os.environ.get("TORTURE_DUMP")
        if dump:
            # what qrxferd passed on, for the record (kept with the test's logs)
            with open(os.path.join(dump, "%s-%s.fwd" % (transport, name)), "wb") as f:
                f.write(b"\n----\n".join(fwd))
        errs = []
        if not alive(pid):
            errs.append("qrxferd died")
        elif not ping(sip_port):
            errs.append("qrxferd no longer answers OPTIONS")
        if note:
            errs.append(note)
        if exp is not None and not note:
            allow = exp[0] if transport == "udp" else exp[1]
            known = KNOWN.get((transport, name))
            if allowed(outcome, allow):
                if known:
                    errs.append("XPASS: now as the RFC asks; drop it from KNOWN")
            elif known and outcome == known[0] and alive(pid):
                print("XFAIL %s %s: %s, RFC 4475 asks otherwise: %s [%s]" % (
                    transport, name, known[1], WHY.get(name, ""), seen))
                sys.stdout.flush()
                continue
            else:
                errs.append("got %s; %s" % (outcome, WHY.get(name, "")))
            errs += extra_checks(name, fwd, finals)
        if errs:
            failed += 1
            print("FAIL %s %s: %s [%s]" % (transport, name, "; ".join(errs), seen))
        else:
            print("PASS %s %s: %s" % (transport, name, seen))
        sys.stdout.flush()
        if not alive(pid):
            break
    if unchecked:
        print("FAIL %s: %d message(s) whose answers could not be observed: %s" % (
            transport, len(unchecked), " ".join(unchecked)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
