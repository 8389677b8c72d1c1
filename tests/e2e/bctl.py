#!/usr/bin/env python3
"""Minimal client for baresip's ctrl_tcp module (netstring-framed JSON).

ctrl_tcp serves one client at a time and a new connection replaces the old one,
so one Ctrl object keeps one connection for commands and events alike.
"""
import json
import socket
import time


class CtrlError(Exception):
    pass


class Ctrl:
    def __init__(self, name, port, host="127.0.0.1", connect_timeout=10.0):
        self.name = name
        self.buf = b""
        self.events = []  # every event seen, in order, as dicts
        self.sock = None
        self.token = 0
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                self.sock = socket.create_connection((host, port), timeout=1.0)
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    raise CtrlError(f"{name}: ctrl_tcp 127.0.0.1:{port}: {e}")
                time.sleep(0.1)

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None

    def _read_one(self, timeout):
        """Return one decoded message, or None when timeout passes."""
        deadline = time.monotonic() + timeout
        while True:
            colon = self.buf.find(b":")
            if colon > 0:
                n = int(self.buf[:colon])
                end = colon + 1 + n
                if len(self.buf) >= end + 1:
                    if self.buf[end : end + 1] != b",":
                        raise CtrlError(f"{self.name}: bad netstring framing")
                    data = self.buf[colon + 1 : end]
                    self.buf = self.buf[end + 1 :]
                    return json.loads(data.decode("utf-8", "replace"))
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                raise CtrlError(f"{self.name}: ctrl_tcp connection closed")
            self.buf += chunk

    def _note(self, msg):
        if msg.get("event"):
            self.events.append(msg)
            print(f"  [{self.name}] event {msg.get('type')} {msg.get('param', '')}", flush=True)

    def command(self, cmd, params="", timeout=5.0):
        """Send a command; return the response dict (events read meanwhile are kept)."""
        self.token += 1
        tok = f"{self.name}-{self.token}"
        body = json.dumps({"command": cmd, "params": params, "token": tok}).encode()
        self.sock.sendall(str(len(body)).encode() + b":" + body + b",")
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_one(max(0.0, deadline - time.monotonic()))
            if msg is None:
                raise CtrlError(f"{self.name}: no response to '{cmd}' within {timeout}s")
            self._note(msg)
            if msg.get("response") and msg.get("token") == tok:
                return msg

    def pump(self, seconds):
        """Read and keep events for the given time."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            msg = self._read_one(left)
            if msg is not None:
                self._note(msg)

    def seen(self, etype, since=0):
        return [e for e in self.events[since:] if e.get("type") == etype]
