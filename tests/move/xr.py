#!/usr/bin/env python3
"""xr.py PORT CALLID KIND: one out-of-dialog PUBLISH (Event: vq-rtcpxr) to qrxferd on PORT
from a fresh loopback port (a stranger's flow), its report on CALLID; prints the final status
and reason phrase. KIND names the body (see BODIES; "nothing" is a well-formed report saying
no packet arrived)."""
import socket
import sys
import time

GOOD = ("VQSessionReport: CallTerm\r\nCallID: {cid}\r\nLocalID: <sip:x@127.0.0.1>\r\n"
        "RemoteID: <sip:far@qrxfer.test>\r\nLocalAddr: IP=127.0.0.1 PORT=4000\r\n"
        "RemoteAddr: IP=127.0.0.1 PORT=4002\r\nLocalMetrics:\r\n"
        "PacketLoss: NLR={nlr} JDR=0.0\r\n")

BODIES = {
    "nothing": GOOD.replace("{nlr}", "100"),
    "seen": GOOD.replace("{nlr}", "0.0"),
    "empty": "",
    "firstline": GOOD.replace("VQSessionReport: CallTerm", "Hello"),
    "nocallid": GOOD.replace("CallID: {cid}\r\n", ""),
    "twocallid": GOOD.replace("CallID: {cid}\r\n", "CallID: {cid}\r\nCallID: other\r\n"),
    "nolocal": GOOD.replace("LocalMetrics:\r\nPacketLoss: NLR={nlr} JDR=0.0\r\n", ""),
    "nlr": GOOD.replace("NLR={nlr}", "NLR=abc"),
    "nlr101": GOOD.replace("NLR={nlr}", "NLR=101"),
    "nlrhuge": GOOD.replace("NLR={nlr}", "NLR=" + "9" * 40),
    "nul": GOOD.replace("RemoteID:", "Remote\x00ID:"),
    "longline": GOOD.replace("LocalID: <sip:x@127.0.0.1>", "LocalID: <sip:" + "x" * 600 + "@h>"),
    "big": GOOD + ("X-Pad: " + "y" * 400 + "\r\n") * 12,
    "manylines": GOOD + "X: y\r\n" * 80,
    "noaddr": GOOD.replace("RemoteAddr: IP=127.0.0.1 PORT=4002\r\n", ""),
    "badname": GOOD.replace("LocalID:", "Local ID:"),
    "lonecr": GOOD.replace("LocalMetrics:\r\n", "LocalMetrics:\r"),
}


def main(port, cid, kind, ctype="application/vq-rtcpxr"):
    body = BODIES[kind].replace("{cid}", cid).replace("{nlr}", "0.0").encode("latin-1")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    me = s.getsockname()[1]
    msg = ("PUBLISH sip:collector@qrxfer.test SIP/2.0\r\n"
           "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-xr-%d\r\n"
           "From: <sip:stranger@127.0.0.1>;tag=xr\r\nTo: <sip:collector@qrxfer.test>\r\n"
           "Call-ID: xr-%d@stranger\r\nCSeq: 1 PUBLISH\r\nMax-Forwards: 70\r\n"
           "Event: vq-rtcpxr\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n") % (
               me, int(time.time() * 1e6), int(time.time() * 1e6), ctype, len(body))
    data = msg.encode() + body
    deadline = time.monotonic() + 8
    s.settimeout(0.5)
    while time.monotonic() < deadline:
        s.sendto(data, ("127.0.0.1", int(port)))
        try:
            while True:
                line = s.recv(65536).decode("latin-1").split("\r\n", 1)[0]
                parts = line.split(" ", 2)
                if int(parts[1]) >= 200:
                    print(parts[1], parts[2] if len(parts) > 2 else "")
                    return 0
        except (socket.timeout, ValueError, IndexError):
            continue
    print("timeout")
    return 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
