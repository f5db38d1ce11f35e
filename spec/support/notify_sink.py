#!/usr/bin/env python3
"""A stand-in for systemd's notify socket, for the service specs.

Binds a unix datagram socket (an abstract name when the argument starts with
'@', else a path), prints "bound <address>", then one line per datagram:
"msg <pid> <text>" with newlines in the text shown as '|'. Runs until
SIGTERM (or SIGINT), then removes a path socket."""
import os
import signal
import socket
import struct
import sys

def main():
    address = sys.argv[1]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    bind_to = "\0" + address[1:] if address.startswith("@") else address
    sock.bind(bind_to)
    stopping = []
    def stop(*_):
        # only noted here: a line is never cut in half by the exit
        stopping.append(True)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sock.settimeout(0.05)
    print("bound", address, flush=True)
    creds = struct.calcsize("3i")
    while not stopping:
        try:
            data, ancdata, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(creds))
        except socket.timeout:
            continue
        pid = 0
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("3i", payload[:creds])[0]
        text = data.decode("utf-8", "replace").strip("\n").replace("\n", "|")
        sys.stdout.write("msg %d %s\n" % (pid, text))
        sys.stdout.flush()
    if not address.startswith("@"):
        try:
            os.unlink(address)
        except OSError:
            pass

main()
