#!/usr/bin/env python3
"""A client on SIP over TLS (RFC 3261 section 26.2) or TCP: OPTIONS, then a call
INVITE/200/ACK/BYE through qrxferd. Prints what it checked; exits 1 on the first failure.
usage: tls_call.py CAFILE PORT                      a phone on TLS calls sip:bob@qrxfer.test
       tls_call.py tcp PORT VIAPORT RURI            over TCP from a passing port, with
                                                    VIAPORT in Via and Contact (the upstream)"""
import re
import socket
import ssl
import sys
import uuid

cafile, port = sys.argv[1], int(sys.argv[2])
tcp = cafile == "tcp"
conn = socket.create_connection(("127.0.0.1", port), timeout=10)
if tcp:
    sock, name = conn, "TCP"
    via_port, ruri = int(sys.argv[3]), sys.argv[4]
else:
    ctx = ssl.create_default_context(cafile=cafile)
    sock, name = ctx.wrap_socket(conn, server_hostname="127.0.0.1"), "TLS"
    via_port, ruri = sock.getsockname()[1], "sip:bob@qrxfer.test"
lport = sock.getsockname()[1]
if tcp and lport == via_port:
    raise SystemExit("FAIL tls: the TCP client got its Via port as its source port")
buf = b""


def fail(why):
    print("FAIL tls: " + why)
    sys.exit(1)


def read_msg():
    """One SIP message from the stream, framed by Content-Length (RFC 3261 18.3)."""
    global buf
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            fail("qrxferd closed the %s connection" % name)
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    m = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", head)
    n = int(m.group(1)) if m else 0
    while len(rest) < n:
        rest += sock.recv(65536)
    buf = rest[n:]
    return head.decode(), rest[:n].decode()


def hdr(head, name):
    m = re.search(r"(?im)^(?:%s)\s*:\s*(.*)$" % name, head)
    return m.group(1).strip() if m else ""


def request(method, uri, call_id, cseq, tags, extra="", body=""):
    via = "Via: SIP/2.0/%s 127.0.0.1:%d;branch=z9hG4bK-%s" % (name, via_port,
                                                            uuid.uuid4().hex[:12])
    msg = ("%s %s SIP/2.0\r\n%s\r\nMax-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=%s\r\n"
           "To: <sip:bob@qrxfer.test>%s\r\nCall-ID: %s\r\nCSeq: %d %s\r\n"
           "Contact: <%s:alice@127.0.0.1:%d;transport=%s>\r\n%sContent-Length: %d\r\n\r\n%s"
           % (method, uri, via, tags[0], (";tag=" + tags[1]) if tags[1] else "", call_id, cseq,
              method, "sip" if tcp else "sips", via_port, name.lower(), extra, len(body), body))
    sock.sendall(msg.encode())


def final(method):
    while True:
        head, body = read_msg()
        first = head.split("\r\n", 1)[0]
        if not first.startswith("SIP/2.0 "):
            fail("unexpected request while waiting for the %s answer: %s" % (method, first))
        code = int(first.split()[1])
        if code >= 200:
            return code, head, body


request("OPTIONS", "sip:127.0.0.1:%d;transport=%s" % (port, name.lower()),
        "opt-" + uuid.uuid4().hex, 1, ("o1", None))
code, _, _ = final("OPTIONS")
if code != 200:
    fail("OPTIONS over %s answered %d" % (name, code))
print("PASS tls: OPTIONS over %s answered 200" % name)

sdp = ("v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=offer-caller\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 41000 RTP/AVP 0\r\n")
cid = name.lower() + "-" + uuid.uuid4().hex
tags = ["a" + uuid.uuid4().hex[:8], None]
request("INVITE", ruri, cid, 1, tags, "Content-Type: application/sdp\r\n", sdp)
code, head, body = final("INVITE")
if code != 200:
    fail("INVITE over %s answered %d" % (name, code))
if "m=audio" not in body:
    fail("the 200 carries no SDP answer")
tags[1] = re.search(r"tag=([^;>\s]+)", hdr(head, "To|t")).group(1)
contact = re.search(r"<([^>]+)>", hdr(head, "Contact|m")).group(1)
request("ACK", contact, cid, 1, tags)
print("PASS tls: call answered over %s, ACKed" % name)
request("BYE", contact, cid, 2, tags)
code, _, _ = final("BYE")
if code != 200:
    fail("BYE over %s answered %d" % (name, code))
print("PASS tls: BYE over %s answered 200" % name)
