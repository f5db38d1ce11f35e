#!/usr/bin/env python3
"""Runs a command on a real pseudo-terminal and types keys at it, for the
specs that need a terminal (Ctrl+C through the line discipline reaches the
whole foreground process group, as in a real shell).

    pty_run.py [--wait-for TEXT] [--delay S | --delay-range A,B]
               [--keys KEYS] [--timeout S] [--tries N] -- cmd args...

For each try: start cmd as the session leader of a new terminal, wait until
its output contains TEXT, wait the delay (random in A..B for --delay-range),
type KEYS (default Ctrl+C), and wait up to --timeout seconds for it to end.
Prints the terminal output of the last try, then one line per try:
"try N: exit CODE" or "try N: signal SIGNO" or "try N: timeout".
"""
import argparse
import os
import pty
import random
import select
import signal
import sys
import time


def read_some(fd, buf, limit):
    """Reads what is there within limit seconds; False at EOF."""
    r, _, _ = select.select([fd], [], [], limit)
    if not r:
        return True
    try:
        data = os.read(fd, 4096)
    except OSError:  # EIO: the terminal's last user closed it
        return False
    if not data:
        return False
    buf.append(data)
    return True


def one_try(args, delay):
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execvp(args.cmd[0], args.cmd)
        finally:
            os._exit(127)
    buf = []
    deadline = time.monotonic() + args.timeout
    want = args.wait_for.encode() if args.wait_for else b""
    eof = False
    while want and want not in b"".join(buf) and time.monotonic() < deadline:
        if not read_some(fd, buf, 0.05):
            eof = True
            break
    if not eof:
        end = time.monotonic() + delay
        while time.monotonic() < end:
            if not read_some(fd, buf, max(0.0, end - time.monotonic())):
                eof = True
                break
        try:
            os.write(fd, args.keys.encode().decode("unicode_escape").encode())
        except OSError:
            pass
    status = None
    while time.monotonic() < deadline:
        if not eof and not read_some(fd, buf, 0.05):
            eof = True
        got, st = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            status = st
            while not eof and read_some(fd, buf, 0.05):
                pass
            break
        if eof:
            time.sleep(0.01)
    if status is None:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        result = "timeout"
    elif os.WIFSIGNALED(status):
        result = "signal %d" % os.WTERMSIG(status)
    else:
        result = "exit %d" % os.WEXITSTATUS(status)
    os.close(fd)
    return b"".join(buf).decode(errors="replace"), result


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--wait-for", default="")
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--delay-range", default=None)
    p.add_argument("--keys", default="\\x03")
    p.add_argument("--timeout", type=float, default=20.0)
    p.add_argument("--tries", type=int, default=1)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("cmd", nargs="+")
    args = p.parse_args()
    rng = random.Random(args.seed)
    results = []
    out = ""
    for _ in range(args.tries):
        delay = args.delay
        if args.delay_range:
            a, b = (float(x) for x in args.delay_range.split(","))
            delay = rng.uniform(a, b)
        out, result = one_try(args, delay)
        results.append(result)
    sys.stdout.write(out)
    if not out.endswith("\n"):
        sys.stdout.write("\n")
    for i, r in enumerate(results, 1):
        sys.stdout.write("try %d: %s\n" % (i, r))


if __name__ == "__main__":
    main()
