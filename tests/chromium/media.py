#!/usr/bin/env python3
"""tests/chromium/media.py: the media a watch page plays in tests/chromium/watch.test.

  media.py wav FILE SECS          writes a SECS-second mono 8 kHz WAV (a 440 Hz tone whose
                                  loudness steps each second), made here: the machine has no
                                  video encoder (no ffmpeg), and <video> plays WAV the same way
  media.py serve DIR PORT CERT KEY  serves DIR over HTTPS on 127.0.0.1:PORT with Range
                                  requests (seeking), until killed

Only 127.0.0.1 is used.
"""
import http.server
import math
import os
import ssl
import struct
import sys
import wave


def make_wav(path, secs):
    rate = 8000
    tone = [math.sin(2 * math.pi * 440 * i / rate) for i in range(rate)]
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        for sec in range(int(secs)):
            amp = 2000 + 1000 * (sec % 8)
            w.writeframes(struct.pack("<%dh" % rate, *(int(amp * x) for x in tone)))


class Ranged(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def send_head(self):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404)
            return None
        size = os.path.getsize(path)
        f = open(path, "rb")
        rng = self.headers.get("Range", "")
        start, end = 0, size - 1
        if rng.startswith("bytes="):
            a, _, b = rng[6:].split(",")[0].partition("-")
            if a:
                start = int(a)
                end = int(b) if b else size - 1
            elif b:
                start = max(0, size - int(b))
            if start >= size:
                self.send_error(416)
                f.close()
                return None
            end = min(end, size - 1)
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        else:
            self.send_response(200)
        self.send_header("Content-Type", "audio/wav" if path.endswith(".wav") else
                         "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        f.seek(start)
        self._left = end - start + 1
        return f

    def copyfile(self, src, dst):
        left = getattr(self, "_left", None)
        while left is None or left > 0:
            chunk = src.read(65536 if left is None else min(65536, left))
            if not chunk:
                break
            dst.write(chunk)
            if left is not None:
                left -= len(chunk)


def serve(d, port, cert, key):
    os.chdir(d)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Ranged)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "wav":
        make_wav(sys.argv[2], float(sys.argv[3]))
    else:
        serve(*sys.argv[2:6])
