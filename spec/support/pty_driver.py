#!/usr/bin/env python3
"""Drives a command through a real pseudo-terminal, for the console specs.

Usage: pty_driver.py CMD [ARGS...] < steps

Each line of the steps is one of:
  expect REGEX    wait (20 s at most) until the output since the last match
                  matches REGEX (Python syntax)
  send TEXT       type TEXT (Python escapes: \\r, \\x03 for Ctrl+C, \\x04 for
                  Ctrl+D, \\x1b[A for the up arrow)
  sleep SECONDS
  signal NAME     send the signal (SIGTERM, ...) to the command
  wait            wait (30 s at most) for the command to end
Prints "OK" or "FAIL <step>", then "STATUS <code> <signal>", "PID <pid>",
then "TRANSCRIPT" and everything the command wrote to the terminal. A command
still running at the end is killed (and reported as such).
"""
import codecs
import fcntl
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import time


def main():
    steps = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(sys.argv[1], sys.argv[1:])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, int(os.environ.get("PTY_COLUMNS", "250")), 0, 0))
    transcript = bytearray()
    mark = 0
    status = None

    def pump(timeout):
        nonlocal status
        ready, _, _ = select.select([fd], [], [], timeout)
        if ready:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if data:
                transcript.extend(data)
                return True
        if status is None:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
        return False

    failed = None
    for step in steps:
        verb, _, arg = step.partition(" ")
        if verb == "expect":
            pattern = re.compile(arg.encode(), re.S)
            deadline = time.monotonic() + 20
            while True:
                m = pattern.search(bytes(transcript), mark)
                if m:
                    mark = m.end()
                    break
                left = deadline - time.monotonic()
                if left <= 0 or (status is not None and not pump(0.05)):
                    failed = step
                    break
                pump(min(left, 0.1))
        elif verb == "send":
            os.write(fd, codecs.decode(arg, "unicode_escape").encode("latin-1"))
        elif verb == "signal":
            os.kill(pid, getattr(signal, arg))
        elif verb == "sleep":
            end = time.monotonic() + float(arg)
            while time.monotonic() < end:
                pump(max(0, min(0.05, end - time.monotonic())))
        elif verb == "wait":
            deadline = time.monotonic() + 30
            while status is None and time.monotonic() < deadline:
                pump(0.1)
            if status is None:
                failed = step
        else:
            failed = "unknown step: " + step
        if failed:
            break

    if status is None:
        if not failed:
            failed = "still running at the end"
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    while pump(0.05):
        pass
    os.close(fd)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
    out = sys.stdout.buffer
    out.write(b"OK\n" if not failed else b"FAIL " + failed.encode() + b"\n")
    out.write(b"STATUS %d %d\nPID %d\nTRANSCRIPT\n" % (code, sig, pid))
    out.write(bytes(transcript))
    out.flush()


if __name__ == "__main__":
    main()
