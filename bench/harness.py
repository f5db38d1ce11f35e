"""coil against its peers: the harness behind bench/run (issues 8 and 17).

Every measurement times a whole process: start to exit for W1-W3 and W6,
SIGINT to exit for W4. W5 is a server: the harness waits for its
`READY <port>`, drives it with bench/c/echo_load.c for a fixed time and
reports requests per second. Each table has a floor row: bare Lua
coroutines doing the same work (bench/floor/). Each program is started by
bench/build/launch (bench/c/launch.c), which times it and reports its
ru_maxrss from wait4(). Runs are interleaved round-robin (each round runs
every workload for every peer, in an order rotated from round to round) so
that drift in the machine hits all peers alike. Each program prints one line that is checked exactly; a wrong
line, a crash or a time-out is a failure, never a number.

See docs/performance.md for what each workload does and how to read the
tables.
"""
import argparse
import datetime
import json
import math
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
BUILD = os.path.join(BENCH, "build")
RESULTS = os.path.join(BENCH, "results")
DOCS = os.path.join(ROOT, "docs")
PY = "/usr/bin/python3"
LAUNCH = os.path.join(BUILD, "launch")

# ---------------------------------------------------------------------------
# Workloads

WORKLOADS = {
    "w1": dict(title="W1 spawn", unit="tasks", default=100_000, smoke=2_000,
               expect=lambda n: f"sum {n * (n - 1) // 2}",
               what="create N tasks; task i yields to the loop once and "
                    "returns i; the main task gathers them all"),
    "w2": dict(title="W2 switch", unit="yields", default=1_000_000, smoke=20_000,
               expect=lambda n: f"count {n}",
               what="one task yields to the loop M times (a real loop turn "
                    "with an I/O poll each time)"),
    "w3": dict(title="W3 timers", unit="tasks", default=100_000, smoke=2_000,
               expect=lambda n: f"count {n}",
               what="N tasks, task i sleeps (i mod 1000) ms; gather; the "
                    "time shown is the overhead, wall - 1.0 s"),
    "w4": dict(title="W4 shutdown", unit="tasks", default=100_000, smoke=2_000,
               expect=lambda n: f"cleaned {n}", interrupt=True,
               what="N tasks sleep 3600 s; after READY the harness sends "
                    "SIGINT; each task's cleanup yields once, then counts "
                    "itself; the time shown runs from the signal to the exit"),
}
W3_SLEEP = 1.0  # the overhead in W3 is wall time minus this (not for the floor: it does not wait)

WORKLOADS.update({
    "w5": dict(title="W5 TCP echo", unit="connections", server=True,
               sizes=[1024, 65536], expect=lambda n: "READY <port>",
               what="a server on 127.0.0.1; bench/c/echo_load.c opens the "
                    "connections, each sends a message, waits for all of it "
                    "to come back and sends the next, for a fixed time; the "
                    "figure is requests (messages echoed) per second"),
    "w6": dict(title="W6 churn", unit="tasks", default=1_000_000, smoke=20_000,
               expect=lambda n: f"churned {n} sum {n * (n - 1) // 2}",
               what="N short tasks started over time, at most 1000 alive at "
                    "once; each yields to the loop once and returns; run at "
                    "N and N/10 to show that peak RSS stays flat"),
})
W5_CONNECTIONS, W5_SECONDS = 100, 5.0     # full run
W5_SMOKE_CONNECTIONS, W5_SMOKE_SECONDS = 10, 1.0
W5_SIZE_NAMES = {1024: "1 KiB", 65536: "64 KiB"}
ECHO_LOAD = os.path.join(BUILD, "echo_load")

# coil's targets, as ratios to the best peer (not raw C, the floor or coil),
# medians; then the ones against raw C and the floor (issue 17).
TARGETS = {"w1": 0.5, "w2": 0.6, "w3": 0.6, "w4": 0.5, "w6": 0.5}
TARGETS_C = {"w2": 1.5, "w4": 2.5}
TARGETS_FLOOR = {"w1": 1.4}
TARGET_BYTES_PER_TASK = 1.2 * 1024  # when the floor did not run
TARGET_MEMORY_X_FLOOR = 1.25        # memory per suspended task, × a bare coroutine's
TARGET_W6_RSS_GROWTH = 1.25         # peak RSS at N / peak RSS at N/10: flat
NOT_PEERS = ("coil", "c", "floor")  # never the "best peer"
FLOOR_W5_LABEL = "Lua 5.4 + luv, a bare coroutine per connection (floor)"
LUV_W5_LABEL = "Lua 5.4 + luv, callbacks (no coroutines)"

# ---------------------------------------------------------------------------
# Peers


def sh(argv, timeout=30):
    """Runs argv; returns its stdout stripped, or None if it failed."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def first_line(s):
    return s.splitlines()[0] if s else "?"


def dpkg_version(pkg):
    return sh(["dpkg-query", "-W", "-f=${Version}", pkg]) or "?"


class Peer:
    """One contender: how to run workload w at size n, and how to tell it
    is there. `probe` returns None when usable, else why not."""

    def __init__(self, name, label, packages, probe, cmd, version):
        self.name, self.label, self.packages = name, label, packages
        self._probe, self._cmd, self._version = probe, cmd, version
        self.missing = None

    def probe(self):
        self.missing = self._probe()
        return self.missing is None

    def cmd(self, w, n):
        return self._cmd(w, n)

    def version(self):
        try:
            return self._version()
        except Exception as e:  # a version string is never worth a crash
            return f"? ({e})"


def coil_binary(args):
    return os.path.abspath(args.coil or os.environ.get("COIL")
                           or os.path.join(ROOT, "build", "coil"))


def lua_for(module):
    """The first Lua interpreter (5.4, else 5.3) that can require module."""
    for lua in ("lua5.4", "lua5.3"):
        if shutil.which(lua) and sh([lua, "-e", f'require "{module}"']) is not None:
            return lua
    return None


def make_peers(args):
    coil = coil_binary(args)
    src = lambda d, w, ext: os.path.join(BENCH, d, f"{w}.{ext}")
    cq_lua = lua_for("cqueues")
    peers = [
        Peer("coil", "coil", [],
             lambda: None if os.access(coil, os.X_OK) else f"{coil} not built",
             lambda w, n: [coil, src("coil", w, "lua"), str(n)],
             lambda: first_line(sh([coil, "-v"]))),
        Peer("c", "raw C (libuv)", ["gcc", "libc6-dev", "libuv1-dev"],
             lambda: None if all(os.access(os.path.join(BUILD, w), os.X_OK)
                                 for w in WORKLOADS) else "C floor not built",
             lambda w, n: [os.path.join(BUILD, w), str(n)],
             lambda: f"libuv {sh(['pkg-config', '--modversion', 'libuv']) or dpkg_version('libuv1-dev')}, "
                     f"{first_line(sh(['cc', '--version']))}, -O2"),
        Peer("floor", "bare Lua 5.4 coroutines (floor)", ["lua5.4", "lua-luv"],
             lambda: None if shutil.which("lua5.4") and sh(["lua5.4", "-e", 'require "luv"']) is not None
             else "lua5.4 with luv not installed",
             lambda w, n: ["lua5.4", src("floor", w, "lua"), str(n)],
             lambda: f"{sh(['lua5.4', '-e', 'io.write(_VERSION)'])} (lua5.4 {dpkg_version('lua5.4')}), "
                     "no runtime (W5: luv)"),
        Peer("luv", "Lua 5.4 + luv, hand-written scheduler", ["lua5.4", "lua-luv"],
             lambda: None if shutil.which("lua5.4") and sh(["lua5.4", "-e", 'require "luv"']) is not None
             else "lua5.4 with luv not installed",
             lambda w, n: ["lua5.4", src("luv", w, "lua"), str(n)],
             lambda: f"{sh(['lua5.4', '-e', 'io.write(_VERSION)'])} (lua5.4 {dpkg_version('lua5.4')}), "
                     f"luv {sh(['lua5.4', '-e', 'io.write(require([[luv]]).version_string())'])}"),
        Peer("cqueues", "cqueues" if cq_lua != "lua5.3" else "cqueues (Lua 5.3)",
             ["lua5.4", "lua-cqueues"],
             lambda: None if lua_for("cqueues") else "lua-cqueues not installed",
             lambda w, n: [cq_lua or "lua5.4", src("cqueues", w, "lua"), str(n)],
             lambda: f"cqueues {dpkg_version('lua-cqueues')} on "
                     f"{sh([cq_lua or 'lua5.4', '-e', 'io.write(_VERSION)'])}"),
        Peer("asyncio", "Python asyncio", ["python3"],
             lambda: None if os.access(PY, os.X_OK) else f"{PY} missing",
             lambda w, n: [PY, src("asyncio", w, "py"), str(n)],
             lambda: f"CPython {platform.python_version() if sys.executable == PY else sh([PY, '-c', 'import platform; print(platform.python_version())'])}"),
        Peer("uvloop", "Python asyncio + uvloop", ["python3-uvloop"],
             lambda: None if sh([PY, "-c", "import uvloop"]) is not None else "python3-uvloop not installed",
             lambda w, n: [PY, src("asyncio", w, "py"), str(n), "uvloop"],
             lambda: f"uvloop {sh([PY, '-c', 'import uvloop; print(uvloop.__version__)'])}"),
        Peer("trio", "Python Trio", ["python3-trio"],
             lambda: None if sh([PY, "-c", "import trio"]) is not None else "python3-trio not installed",
             lambda w, n: [PY, src("trio", w, "py"), str(n)],
             lambda: f"Trio {sh([PY, '-c', 'import trio; print(trio.__version__)'])}"),
        Peer("node", "Node.js", ["nodejs"],
             lambda: None if shutil.which("node") else "node not installed",
             lambda w, n: ["node", src("node", w, "js"), str(n)],
             lambda: f"Node {sh(['node', '--version'])}"),
    ]
    return peers


# ---------------------------------------------------------------------------
# Setting up: packages and the C floor


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def install(peers, args):
    """apt-get install what the selected peers lack; failures only skip."""
    want = []
    for p in peers:
        if not p.probe() or p.name == "c":
            want += [pkg for pkg in p.packages if dpkg_version(pkg) == "?"]
    want = sorted(set(want))
    if not want or args.no_install:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        log(f"bench: not root (or no apt-get); not installing {' '.join(want)}")
        return
    log(f"bench: installing {' '.join(want)} (apt-get; failures only skip a peer)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    os.makedirs(BUILD, exist_ok=True)
    with open(os.path.join(BUILD, "apt.log"), "a") as out:
        subprocess.run(["apt-get", "update", "-qq"], stdout=out, stderr=out, env=env)
        for pkg in want:  # one at a time: one missing package skips one peer
            r = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", pkg],
                               stdout=out, stderr=out, env=env)
            if r.returncode != 0:
                log(f"bench: could not install {pkg} (see bench/build/apt.log)")


def build_c(names):
    """Builds bench/c/<name>.c into bench/build/; returns an error or None.
    (echo_load.c is shared with bench/workers, which builds it the same way.)"""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return "no C compiler"
    os.makedirs(BUILD, exist_ok=True)
    for w in names:
        src, exe = os.path.join(BENCH, "c", f"{w}.c"), os.path.join(BUILD, w)
        if os.path.exists(exe) and os.path.getmtime(exe) >= os.path.getmtime(src):
            continue
        r = subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-o", exe, src, "-luv"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return f"cc {w}.c failed: {r.stderr.strip()[:300]}"
    return None


# ---------------------------------------------------------------------------
# Running one process


class Failed(Exception):
    pass


def echo_load(port, size, load):
    """Drives a W5 server: returns (requests per second, requests) or
    raises Failed."""
    conns, secs = load
    try:
        r = subprocess.run([ECHO_LOAD, "127.0.0.1", str(port), str(conns), str(secs), str(size)],
                           capture_output=True, text=True, timeout=secs + 60,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise Failed(f"echo_load did not end within {secs + 60:.0f} s")
    words = r.stdout.split()
    if r.returncode != 0 or len(words) < 3 or words[1] != "requests/s":
        raise Failed(f"echo_load: {(r.stderr.strip() or r.stdout.strip() or 'exit ' + str(r.returncode))[:200]}")
    rps, requests = float(words[0]), int(words[2].lstrip("("))
    if requests <= 0:
        raise Failed("echo_load: no message came back")
    return rps, requests


def run_once(peer, w, n, timeout, load=None):
    """Runs peer's program for w at size n under bench/build/launch. Returns
    a record: `time` (seconds; start to exit, or SIGINT to exit for W4),
    `rss` (peak, KiB) and, when something went wrong, `error`. For a server
    (W5), n is the message size and load (connections, seconds) the
    echo_load run; the record has `rps` and the server ends by SIGTERM."""
    spec = WORKLOADS[w]
    rec = dict(peer=peer.name, w=w, n=n)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    rfd, wfd = os.pipe()
    err = tempfile.TemporaryFile()
    server = spec.get("server")
    if server:
        timeout += load[1]
    deadline = time.monotonic() + timeout
    try:
        proc = subprocess.Popen([LAUNCH, str(wfd)] + peer.cmd(w, 0 if server else n), pass_fds=(wfd,),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=err, cwd=ROOT, env=env, start_new_session=True)
    except OSError as e:
        os.close(rfd)
        os.close(wfd)
        return dict(rec, error=f"cannot start: {e}")
    os.close(wfd)
    ofd = proc.stdout.fileno()
    buf = {ofd: b"", rfd: b""}
    live = {ofd, rfd}

    def pump(until, what):
        """Reads both pipes until until() holds; raises Failed on time-out."""
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failed(f"timed out after {timeout:.0f} s waiting for {what}")
            if not live:
                raise Failed(f"all pipes closed while waiting for {what}")
            ready, _, _ = select.select(list(live), [], [], left)
            for fd in ready:
                chunk = os.read(fd, 65536)
                if chunk:
                    buf[fd] += chunk
                else:
                    live.discard(fd)

    t_sig = None
    try:
        pump(lambda: b"\n" in buf[rfd], "the launcher")
        pid = int(buf[rfd].split(b"\n")[0].split()[1])
        if spec.get("interrupt"):
            pump(lambda: b"\n" in buf[ofd] or ofd not in live, "READY")
            first = buf[ofd].split(b"\n")[0]
            if first != b"READY":
                raise Failed(f"first line {first[:60]!r}, not READY")
            t_sig = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            os.kill(pid, signal.SIGINT)
        elif server:
            pump(lambda: b"\n" in buf[ofd] or ofd not in live, "READY <port>")
            line = buf[ofd].split(b"\n")[0]
            first = line.split()
            if len(first) != 2 or first[0] != b"READY" or not first[1].isdigit():
                raise Failed(f"first line {line[:60]!r}, not READY <port>")
            rec["rps"], rec["requests"] = echo_load(int(first[1]), n, load)
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                raise Failed("the server ended during the load")
        pump(lambda: buf[rfd].count(b"\n") >= 2 or rfd not in live, "the exit")
        if buf[rfd].count(b"\n") < 2:
            raise Failed("the launcher ended without a report")
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        buf[ofd] += proc.stdout.read()
    except (Failed, subprocess.TimeoutExpired) as e:
        kill(proc)
        rec["error"] = str(e)
    finally:
        os.close(rfd)
    if "error" not in rec:
        done = buf[rfd].split(b"\n")[1].split()
        status, rss, t_start, t_end = (int(x) for x in done[1:5])
        cpu_us = int(done[5]) if len(done) > 5 else None
        stdout = buf[ofd]
    proc.stdout.close()
    err.seek(0)
    stderr = err.read().decode(errors="replace")
    err.close()
    if "error" in rec:
        return dict(rec, stderr=stderr[-400:])
    rec["time"] = (t_end - (t_sig if t_sig is not None else t_start)) / 1e9
    rec["wall"] = (t_end - t_start) / 1e9
    if t_sig is not None:
        rec["setup"] = (t_sig - t_start) / 1e9
    rec["rss"] = rss
    if cpu_us is not None:
        rec["cpu"] = cpu_us / 1e6
    lines = stdout.decode(errors="replace").splitlines()
    expect = spec["expect"](n)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        how = f"killed by {signal.Signals(sig).name}"
        ok_exit = ((spec.get("interrupt") and sig == signal.SIGINT)
                   or (server and sig == signal.SIGTERM))
    else:
        code = os.WEXITSTATUS(status)
        how = f"exit {code}"
        ok_exit = (code == 0 or (spec.get("interrupt") and code == 130)
                   or (server and code == 128 + signal.SIGTERM))
    if server:
        pass  # READY <port> and echo_load's line were checked above
    elif expect not in lines:
        got = lines[-1][:60] if lines else "nothing"
        rec["error"] = f"printed {got!r}, not {expect!r} ({how})"
    elif not ok_exit:
        rec["error"] = how
    if "error" in rec:
        rec["stderr"] = stderr[-400:]
    return rec


def kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.SubprocessError:
        pass


# ---------------------------------------------------------------------------
# The plan: rounds, each running every (workload, size) for every peer


def run_plan(peers, cases, runs, timeout, label, load=None):
    """cases: list of (w, n). Returns the list of records. A peer that fails
    or times out on a case is not run on it again, nor on larger sizes of
    the same workload; nor is one whose last run, grown linearly to the
    next size, would not finish within the time-out."""
    records, given_up = [], {}
    last = {}  # (peer, w) -> (n, wall) of its latest good run
    total = runs * len(cases) * len(peers)
    k = 0
    for r in range(runs):
        for w, n in cases:
            order = peers[r % len(peers):] + peers[:r % len(peers)]
            for p in order:
                k += 1
                size = f"size={n:,}" if WORKLOADS[w].get("server") else f"N={n:,}"
                tag = f"[{label} {k}/{total}] {WORKLOADS[w]['title']} {size} {p.name}"
                stop = given_up.get((p.name, w))
                if stop is not None and n >= stop:
                    continue
                prev = last.get((p.name, w))
                if (prev and prev[0] < n and prev[1] * n / prev[0] > timeout
                        and not WORKLOADS[w].get("server")):
                    given_up[(p.name, w)] = n
                    records.append(dict(peer=p.name, w=w, n=n, round=r, error=(
                        f"not run: {prev[1]:.1f} s at N={prev[0]:,} grows past the "
                        f"{timeout:.0f} s time-out")))
                    log(f"{tag}: skipped, {prev[1]:.1f} s at N={prev[0]:,} would take "
                        f"over {timeout:.0f} s")
                    continue
                rec = run_once(p, w, n, timeout, load)
                rec["round"] = r
                records.append(rec)
                if "error" in rec:
                    given_up[(p.name, w)] = n
                    log(f"{tag}: FAILED: {rec['error']}")
                    if rec.get("stderr"):
                        log("    " + rec["stderr"].strip().replace("\n", "\n    "))
                else:
                    last[(p.name, w)] = (n, rec["wall"])
                    if "rps" in rec:
                        log(f"{tag}: {rec['rps']:.0f} requests/s, {rec['rss'] / 1024:.1f} MiB")
                    else:
                        log(f"{tag}: {rec['time']:.3f} s, {rec['rss'] / 1024:.1f} MiB")
    return records


# ---------------------------------------------------------------------------
# Tables


def fmt_s(x):
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:.0f} s"
    if abs(x) >= 10:
        return f"{x:.1f} s"
    return f"{x:.3f} s"


def fmt_mib(kib):
    return f"{kib / 1024:.1f} MiB" if kib is not None else "-"


def fmt_ratio(x):
    if x is None:
        return "-"
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def fmt_n(n):
    return f"{n:,}".replace(",", " ")


def summarize(records, peers, w, n):
    """Per peer: median/min/max of the measured quantity, peak RSS and
    failures. For W3 the quantity is the overhead (wall - 1.0 s; the floor
    does not wait, so all of its time is overhead); for W5, requests per
    second (higher is better)."""
    rows = {}
    for p in peers:
        mine = [r for r in records if r["peer"] == p.name and r["w"] == w and r["n"] == n]
        if not mine:
            continue
        good = [r for r in mine if "error" not in r]
        bad = [r for r in mine if "error" in r]
        if w == "w5":
            vals = [r["rps"] for r in good]
        else:
            sleep = W3_SLEEP if w == "w3" and p.name != "floor" else 0.0
            vals = [r["time"] - sleep for r in good]
        row = dict(peer=p, runs=len(mine), failed=len(bad),
                   error=bad[0]["error"] if bad else None)
        if good and w == "w5" and all("cpu" in r and r.get("requests") for r in good):
            # the server's own CPU time per echoed message: what it costs,
            # whether or not the load generator keeps it busy
            row["cpu_per_req"] = statistics.median(r["cpu"] / r["requests"] for r in good)
        if good:
            row.update(median=statistics.median(vals), lo=min(vals), hi=max(vals),
                       rss=max(r["rss"] for r in good),
                       setup=statistics.median(r["setup"] for r in good) if "setup" in good[0] else None)
        rows[p.name] = row
    return rows


def higher_is_better(w):
    return bool(WORKLOADS[w].get("server"))


def best_peer(rows, w=None):
    """The best peer: the best median among peers other than coil, raw C and
    the floor (lowest time; for W5, most requests per second)."""
    cand = [r for name, r in rows.items() if name not in NOT_PEERS and "median" in r]
    if not cand:
        return None
    pick = max if w and higher_is_better(w) else min
    return pick(cand, key=lambda r: r["median"])


def ratio(a, b):
    if a is None or b is None or b <= 0:
        return None
    return a / b


def fmt_rps(x):
    return fmt_n(round(x)) if x is not None else "-"


def row_label(p, w):
    if p.name == "coil":
        return "**coil**"
    if p.name == "floor":
        return f"*{FLOOR_W5_LABEL if w == 'w5' else p.label}*"
    if p.name == "luv" and w == "w5":
        return LUV_W5_LABEL
    return p.label


def table_title(w, n, load=None):
    spec = WORKLOADS[w]
    if w == "w5":
        conns, secs = load
        return (f"### {spec['title']} — {W5_SIZE_NAMES.get(n, f'{fmt_n(n)} B')} messages, "
                f"{conns} connections, {secs:g} s")
    return f"### {spec['title']} — {'M' if w == 'w2' else 'N'} = {fmt_n(n)} {spec['unit']}"


def workload_table(records, peers, w, n, runs, load=None, small=None):
    """The table of one case. `small` (W6) is the N/10 run, for its RSS."""
    spec = WORKLOADS[w]
    rows = summarize(records, peers, w, n)
    if not rows:
        return "", rows
    small_rows = summarize(records, peers, w, small) if small else {}
    c = rows.get("c", {}).get("median")
    fl = rows.get("floor", {}).get("median")
    best = best_peer(rows, w)
    bm = best["median"] if best else None
    hib = higher_is_better(w)
    best_label = row_label(best["peer"], w) if best else None
    what = {"w1": "time", "w2": "time", "w3": "overhead", "w4": "SIGINT → exit",
            "w5": "requests/s", "w6": "time"}[w]
    expect = ("`READY <port>` from the server, a good line from echo_load"
              if w == "w5" else f"`{spec['expect'](n)}`")
    note = ("ratios are of medians, coil's requests/s to the row's (above 1: coil serves more)"
            if hib else "ratios are of medians")
    head = [table_title(w, n, load), "",
            f"{spec['what']}. Expected: {expect}. Median of {runs} run(s); {note}"
            + (f"; best peer: {best_label}." if best else "."),
            ""]
    cols = ["peer", f"{what} (median)", "min – max", "peak RSS"]
    if w == "w2":
        cols.append("µs / yield")
    if w in ("w3", "w4"):
        cols.append("RSS / task")
    if w == "w4":
        cols.append("start → READY")
    if w == "w5":
        cols += ["MiB/s each way", "server CPU / request"]
    if w == "w6":
        cols += [f"peak RSS at N = {fmt_n(small)}" if small else "peak RSS at N/10", "µs / task"]
    if hib:
        cols += ["coil ÷ row"]
    else:
        cols += ["× raw C", "× floor", "× best peer"]
    lines = ["| " + " | ".join(cols) + " |",
             "|" + "|".join(["---"] + ["--:"] * (len(cols) - 1)) + "|"]
    sign = -1 if hib else 1
    ordered = sorted(rows.values(), key=lambda r: (r.get("median") is None, sign * (r.get("median") or 0)))
    coil = rows.get("coil", {}).get("median")
    for r in ordered:
        name = row_label(r["peer"], w)
        if "median" not in r:
            cells = [name, f"FAILED: {r['error']}"] + [""] * (len(cols) - 2)
        elif hib:
            cells = [name, fmt_rps(r["median"]), f"{fmt_rps(r['lo'])} – {fmt_rps(r['hi'])}",
                     fmt_mib(r["rss"]), f"{r['median'] * n / 2 ** 20:.1f}",
                     f"{r['cpu_per_req'] * 1e6:.1f} µs" if "cpu_per_req" in r else "-",
                     fmt_ratio(ratio(coil, r["median"]))]
            if r["failed"]:
                cells[1] += f" ({r['failed']} failed)"
        else:
            cells = [name, fmt_s(r["median"]), f"{fmt_s(r['lo'])[:-2]} – {fmt_s(r['hi'])}",
                     fmt_mib(r["rss"])]
            if w == "w2":
                cells.append(f"{(r['median'] + 0.0) / n * 1e6:.2f}")
            if w in ("w3", "w4"):
                cells.append(f"{r['rss'] * 1024 / n:.0f} B")
            if w == "w4":
                cells.append(fmt_s(r.get("setup")))
            if w == "w6":
                sr = small_rows.get(r["peer"].name, {})
                cells += [fmt_mib(sr.get("rss")), f"{r['median'] / n * 1e6:.2f}"]
            cells += [fmt_ratio(ratio(r["median"], c)), fmt_ratio(ratio(r["median"], fl)),
                      fmt_ratio(ratio(r["median"], bm))]
            if r["failed"]:
                cells[1] += f" ({r['failed']} failed)"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(head + lines) + "\n", rows


def target_verdict(title, q, value, ref_label, ref, t, lower=True, fmt=None):
    """One target line: coil's value against t × ref (lower=True: at most)."""
    fmt = fmt or fmt_s
    rr = value / ref if ref > 0 else math.inf
    if lower:
        ok = rr <= t
        miss = (f"**MISSED by {rr - t:.2f}×**: coil's {q} must drop from {fmt(value)} "
                f"to {fmt(t * ref)} ({(1 - t / rr) * 100:.0f} % less)")
        rel = "≤"
    else:
        ok = rr >= t
        miss = (f"**MISSED by {t - rr:.2f}×**: coil's {q} must rise from {fmt(value)} "
                f"to {fmt(t * ref)} ({(t / rr - 1) * 100:.0f} % more)" if rr > 0 else "**MISSED**")
        rel = "≥"
    return (f"- {title}: coil {q} {fmt(value)} = {rr:.2f} × {ref_label} ({fmt(ref)}); "
            f"target {rel} {t} ×: {'met' if ok else miss}")


def target_lines(all_rows, n_by_w, small_rows=None):
    """What coil's targets are and whether they are met, by how much not."""
    out = []
    for key, rows in all_rows.items():
        w = key[0] if isinstance(key, tuple) else key
        coil = rows.get("coil")
        if not coil or "median" not in coil:
            continue
        title = WORKLOADS[w]["title"]
        if w == "w5":
            size = key[1]
            title = f"{title} ({W5_SIZE_NAMES.get(size, size)})"
            checks = ([("uvloop", 1.5), ("node", 1.0)] if size == 1024 else
                      [("c", 0.7)] if size == 65536 else [])
            for name, t in checks:
                ref = rows.get(name)
                if ref and "median" in ref:
                    out.append(target_verdict(title, "requests/s", coil["median"], ref["peer"].label,
                                              ref["median"], t, lower=False, fmt=fmt_rps))
                    if "cpu_per_req" in coil and "cpu_per_req" in ref:
                        mine, theirs = coil["cpu_per_req"] * 1e6, ref["cpu_per_req"] * 1e6
                        out.append(f"  - in the server's CPU time per request (what it costs, whatever "
                                   f"the load generator's share): coil {mine:.1f} µs, {ref['peer'].label} "
                                   f"{theirs:.1f} µs: {ref['peer'].label} spends {theirs / mine:.2f} × coil's")
                else:
                    out.append(f"- {title}: {name} did not run, so no ratio to it")
            continue
        q = "overhead" if w == "w3" else "time"
        best = best_peer(rows, w)
        if not best:
            out.append(f"- {title}: no peer ran, so no ratio")
        elif w in TARGETS:
            out.append(target_verdict(title, q, coil["median"], f"best peer, {best['peer'].label},",
                                      best["median"], TARGETS[w]))
        for name, targets in (("c", TARGETS_C), ("floor", TARGETS_FLOOR)):
            ref = rows.get(name)
            if w in targets and ref and "median" in ref:
                out.append(target_verdict(title, q, coil["median"], ref["peer"].label,
                                          ref["median"], targets[w]))
        if w == "w6" and small_rows and "rss" in coil:
            small = small_rows.get("coil", {})
            if "rss" in small:
                g = coil["rss"] / small["rss"]
                verdict = "met" if g <= TARGET_W6_RSS_GROWTH else "**MISSED**: it grows with the total"
                out.append(f"- {title}: coil's peak RSS {fmt_mib(coil['rss'])} at N = {fmt_n(n_by_w[w])} "
                           f"against {fmt_mib(small['rss'])} at N/10 = {g:.2f} ×; "
                           f"target ≤ {TARGET_W6_RSS_GROWTH} × (flat): {verdict}")
    for w in ("w3", "w4"):
        rows = all_rows.get(w, {})
        coil = rows.get("coil")
        if not coil or "rss" not in coil or n_by_w[w] < 100_000:
            continue  # below 100 000 tasks the process's base size dominates
        per = coil["rss"] * 1024 / n_by_w[w]
        floor = rows.get("floor")
        if floor and "rss" in floor:
            bare = floor["rss"] * 1024 / n_by_w[w]
            t = TARGET_MEMORY_X_FLOOR * bare
            ok = per <= t
            verdict = "met" if ok else f"**MISSED by {per - t:.0f} B** per task"
            out.append(f"- memory per suspended task ({WORKLOADS[w]['title']}, peak RSS / N): "
                       f"{per:.0f} B = {per / bare:.2f} × a bare coroutine's ({bare:.0f} B, the floor's); "
                       f"target ≤ {TARGET_MEMORY_X_FLOOR} × ({t:.0f} B): {verdict}")
        else:
            ok = per <= TARGET_BYTES_PER_TASK
            verdict = "met" if ok else f"**MISSED by {per - TARGET_BYTES_PER_TASK:.0f} B** per task"
            out.append(f"- memory per suspended task ({WORKLOADS[w]['title']}, peak RSS / N): "
                       f"{per:.0f} B; target ≤ {TARGET_BYTES_PER_TASK:.0f} B (1.2 KiB): {verdict}")
    if not out:
        return ""
    return "### coil's targets\n\n" + "\n".join(out) + "\n"


def scale_tables(records, peers, ns):
    out = []
    for w in ("w1", "w4"):
        if not any(r["w"] == w for r in records):
            continue
        what = "time" if w == "w1" else "SIGINT → exit"
        out += [f"### Scaling — {WORKLOADS[w]['title']} ({what}; peak RSS)", "",
                "Each cell: median time / peak RSS. Growth is per 10× N from the "
                "largest pair that ran (10 = linear). Marginal memory is "
                "(RSS at the largest N − RSS at the one below) / (difference in N).", ""]
        cols = ["peer"] + [f"N = {fmt_n(n)}" for n in ns] + ["time growth", "RSS growth", "marginal RSS / task"]
        out += ["| " + " | ".join(cols) + " |", "|" + "|".join(["---"] + ["--:"] * (len(cols) - 1)) + "|"]
        for p in peers:
            cells, pts = [p.label if p.name != "coil" else "**coil**"], []
            for n in ns:
                row = summarize(records, [p], w, n).get(p.name)
                if row is None:
                    cells.append("not run")
                elif "median" not in row:
                    e = row["error"] or ""
                    cells.append("timed out" if e.startswith("timed out") else
                                 "skipped (too slow)" if e.startswith("not run") else "FAILED")
                else:
                    cells.append(f"{fmt_s(row['median'])} / {fmt_mib(row['rss'])}")
                    pts.append((n, row["median"], row["rss"]))
            if all(c == "not run" for c in cells[1:]):
                continue
            if len(pts) >= 2:
                (n0, t0, m0), (n1, t1, m1) = pts[-2], pts[-1]
                k = math.log10(n1 / n0)
                cells += [f"{(t1 / t0) ** (1 / k):.1f} ×" if t0 > 0 else "-",
                          f"{(m1 / m0) ** (1 / k):.1f} ×" if m0 > 0 else "-",
                          f"{(m1 - m0) * 1024 / (n1 - n0):.0f} B"]
            else:
                cells += ["-", "-", "-"]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# The chart: W4 shutdown time against N, log-log, one line per peer

CHART_LABELS = {"floor": "bare Lua coroutines (floor)", "c": "raw C (libuv)", "luv": "Lua + luv, by hand", "asyncio": "asyncio",
                "uvloop": "asyncio + uvloop", "trio": "Trio", "node": "Node.js"}
COLORS = {"coil": "#d62728", "floor": "#7f7f7f", "c": "#000000", "luv": "#1f77b4", "cqueues": "#2ca02c",
          "asyncio": "#9467bd", "uvloop": "#8c564b", "trio": "#e377c2", "node": "#ff7f0e"}


def chart_svg(records, peers, ns):
    series = []
    for p in peers:
        pts = []
        for n in ns:
            row = summarize(records, [p], "w4", n).get(p.name)
            if row and "median" in row and row["median"] > 0:
                pts.append((n, row["median"]))
        if pts:
            series.append((p, pts))
    if not series:
        return None
    W, H, L, R, T, B = 800, 440, 70, 250, 40, 50
    xs = [n for n in ns]
    ys = [t for _, pts in series for _, t in pts]
    x0, x1 = math.log10(min(xs)), math.log10(max(xs))
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    y0, y1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    if y1 == y0:
        y1 += 1
    X = lambda n: L + (math.log10(n) - x0) / (x1 - x0) * (W - L - R)
    Y = lambda t: H - B - (math.log10(t) - y0) / (y1 - y0) * (H - T - B)
    e = []
    e.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
             f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">')
    e.append(f'<rect width="{W}" height="{H}" fill="white"/>')
    e.append(f'<text x="{L}" y="22" font-size="15" font-weight="bold">W4 shutdown: time from '
             f'SIGINT to exit, by number of tasks</text>')
    for d in range(y0, y1 + 1):  # horizontal grid, one line per decade
        y = Y(10 ** d)
        e.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="#ddd"/>')
        label = f"{10 ** d:g} s" if d >= 0 else f"{10 ** d * 1000:g} ms"
        e.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    for n in xs:
        x = X(n)
        e.append(f'<line x1="{x:.1f}" y1="{T}" x2="{x:.1f}" y2="{H - B}" stroke="#ddd"/>')
        e.append(f'<text x="{x:.1f}" y="{H - B + 18}" text-anchor="middle">{fmt_n(n)}</text>')
    e.append(f'<text x="{(L + W - R) / 2:.0f}" y="{H - 10}" text-anchor="middle">tasks (N, log scale)</text>')
    e.append(f'<text transform="translate(16 {(T + H - B) / 2:.0f}) rotate(-90)" '
             f'text-anchor="middle">seconds (log scale)</text>')
    e.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="#888"/>')
    for i, (p, pts) in enumerate(series):
        col = COLORS.get(p.name, "#555")
        wid = 3 if p.name == "coil" else 1.8
        path = " ".join(f"{X(n):.1f},{Y(t):.1f}" for n, t in pts)
        e.append(f'<polyline points="{path}" fill="none" stroke="{col}" stroke-width="{wid}"/>')
        for n, t in pts:
            e.append(f'<circle cx="{X(n):.1f}" cy="{Y(t):.1f}" r="3.5" fill="{col}">'
                     f'<title>{p.label}: {fmt_n(n)} tasks, {fmt_s(t)}</title></circle>')
        ly = T + 14 + i * 20
        e.append(f'<line x1="{W - R + 14}" y1="{ly - 4}" x2="{W - R + 38}" y2="{ly - 4}" '
                 f'stroke="{col}" stroke-width="{wid}"/>')
        short = CHART_LABELS.get(p.name, p.label) + (" *" if len(pts) < len(ns) else "")
        e.append(f'<text x="{W - R + 44}" y="{ly}">{short}</text>')
    ly = T + 14 + len(series) * 20 + 10
    notes = ["log–log: slope 1 is linear growth"]
    if any(len(pts) < len(ns) for _, pts in series):
        notes.append("* no point where it failed,")
        notes.append("  timed out or was too slow")
    for i, note in enumerate(notes):
        e.append(f'<text x="{W - R + 14}" y="{ly + i * 16}" fill="#666" '
                 f'xml:space="preserve">{note}</text>')
    e.append('</svg>')
    return "\n".join(e) + "\n"


def chart_w5_svg(records, peers, sizes, load):
    """W5 as horizontal bars: requests per second per server, one panel per
    message size, each sorted best first; coil's bar in its colour."""
    panels = []
    for size in sizes:
        rows = summarize(records, peers, "w5", size)
        bars = sorted(((r["peer"], r["median"]) for r in rows.values() if "median" in r),
                      key=lambda pv: -pv[1])
        if bars:
            panels.append((size, bars))
    if not panels:
        return None
    W, L, R, BAR, GAP, HEAD = 800, 300, 110, 18, 6, 34
    H = 50 + sum(HEAD + len(b) * (BAR + GAP) + 16 for _, b in panels) + 20
    conns, secs = load
    e = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
         f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="16" y="24" font-size="15" font-weight="bold">W5 TCP echo: requests per second, '
         f'{conns} connections on 127.0.0.1 (more is better)</text>']
    y = 50
    for size, bars in panels:
        top = max(v for _, v in bars)
        e.append(f'<text x="16" y="{y + 16}" font-size="13" font-weight="bold">'
                 f'{W5_SIZE_NAMES.get(size, f"{size} B")} messages</text>')
        y += HEAD
        for p, v in bars:
            col = COLORS.get(p.name, "#555")
            width = (W - L - R) * v / top if top > 0 else 0
            label = row_label(p, "w5").strip("*")
            weight = ' font-weight="bold"' if p.name == "coil" else ""
            e.append(f'<text x="{L - 8}" y="{y + BAR - 5}" text-anchor="end"{weight}>{label}</text>')
            e.append(f'<rect x="{L}" y="{y}" width="{width:.1f}" height="{BAR}" fill="{col}">'
                     f'<title>{label}: {fmt_rps(v)} requests/s</title></rect>')
            e.append(f'<text x="{L + width + 6:.1f}" y="{y + BAR - 5}"{weight}>{fmt_rps(v)}</text>')
            y += BAR + GAP
        y += 16
    e.append(f'<text x="16" y="{H - 12}" fill="#666">median of the runs; the load generator '
             f'(bench/c/echo_load.c) shares the machine with the server</text>')
    e.append('</svg>')
    return "\n".join(e) + "\n"


# ---------------------------------------------------------------------------
# Machine description and the results file


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    osname = "?"
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    osname = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    return dict(date=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
                nproc=os.cpu_count(), cpu=cpu, kernel=platform.release(), os=osname,
                memory=f"{mem:.1f} GiB", load=" ".join(f"{x:.2f}" for x in os.getloadavg()))


def machine_md(m, versions, skipped):
    lines = [f"- date: {m['date']}",
             f"- machine: {m['nproc']} CPUs, {m['cpu']}, {m['memory']} RAM",
             f"- system: {m['os']}, Linux {m['kernel']}; load average at start {m['load']}"]
    for name, v in versions.items():
        lines.append(f"- {name}: {v}")
    for name, why in skipped.items():
        lines.append(f"- skipped {name}: {why}")
    return "\n".join(lines) + "\n"


def load_previous():
    try:
        with open(os.path.join(RESULTS, "latest.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def replace_block(text, name, body):
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        return text + f"\n{begin}\n{body}\n{end}\n"
    return text[:i + len(begin)] + "\n" + body + "\n" + text[j:]


# ---------------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="bench/run",
        description="coil against its peers and the bare-Lua floor: W1 spawn, W2 switch, "
                    "W3 timers, W4 shutdown, W5 TCP echo, W6 churn.")
    ap.add_argument("--smoke", action="store_true",
                    help="CI mode: coil and the floor only, small sizes, one run; "
                         "non-zero exit on any failure")
    ap.add_argument("--runs", type=int, help="runs per program (default 5; 1 for --smoke and --scale)")
    ap.add_argument("--only", help="workloads, e.g. w1,w3 (default all)")
    ap.add_argument("--peers", help="peers, e.g. coil,c,node (default all: "
                    "coil,floor,c,luv,cqueues,asyncio,uvloop,trio,node)")
    ap.add_argument("--scale", action="store_true",
                    help="the scaling run instead: W1 and W4 at each --scale-n, and the W4 chart")
    ap.add_argument("--scale-n", default="10000,100000,1000000",
                    help="sizes for --scale (default 10000,100000,1000000)")
    ap.add_argument("--n", type=int, help="N for W1, W3, W4 (default 100000)")
    ap.add_argument("--m", type=int, help="M for W2 (default 1000000)")
    ap.add_argument("--churn-n", type=int, help="N for W6, also run at N/10 (default 1000000)")
    ap.add_argument("--w5-seconds", type=float, help=f"how long each W5 load runs "
                    f"(default {W5_SECONDS:g}; {W5_SMOKE_SECONDS:g} for --smoke)")
    ap.add_argument("--w5-connections", type=int, help=f"W5's connections "
                    f"(default {W5_CONNECTIONS}; {W5_SMOKE_CONNECTIONS} for --smoke)")
    ap.add_argument("--timeout", type=float, help="seconds one process may take "
                    "(default 120; 60 for --smoke)")
    ap.add_argument("--coil", help="the coil binary (default $COIL or build/coil)")
    ap.add_argument("--no-install", action="store_true", help="never run apt-get")
    ap.add_argument("--docs", action="store_true",
                    help="also write the tables into docs/performance.md and the chart to docs/")
    return ap.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    # Children must start with SIGINT at its default action, not ignored (as
    # it is for background jobs of a non-interactive shell): an ignored
    # SIGINT is inherited across exec, and runtimes keep it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    peers = make_peers(args)
    names = [p.name for p in peers]
    if args.smoke:
        chosen = ["coil", "floor"]
    elif args.peers:
        chosen = [s.strip() for s in args.peers.split(",") if s.strip()]
        bad = [s for s in chosen if s not in names]
        if bad:
            log(f"bench: unknown peer(s) {', '.join(bad)}; known: {', '.join(names)}")
            return 2
    else:
        chosen = names
    peers = [p for p in peers if p.name in chosen]
    if args.scale:
        ws = ["w1", "w4"]
    else:
        ws = list(WORKLOADS)
    if args.only:
        only = [s.strip().lower() for s in args.only.split(",") if s.strip()]
        bad = [s for s in only if s not in WORKLOADS]
        if bad:
            log(f"bench: unknown workload(s) {', '.join(bad)}; known: {', '.join(WORKLOADS)}")
            return 2
        ws = [w for w in ws if w in only]
    runs = args.runs or (1 if args.smoke or args.scale else 5)
    timeout = args.timeout or (60 if args.smoke else 120)

    if not args.smoke:
        install(peers, args)
    why = build_c(["launch"])
    if why:
        log(f"bench: cannot build bench/build/launch, which runs every program: {why}")
        return 2
    if any(p.name == "c" for p in peers):
        why = build_c(list(WORKLOADS))
        if why:
            log(f"bench: C floor not built: {why}")
    if "w5" in ws:
        why = build_c(["echo_load"])
        if why:
            log(f"bench: no W5: bench/build/echo_load, its load generator, not built: {why}")
            if args.smoke:
                print("smoke: 0 passed, 1 failed")
                return 1
            ws = [w for w in ws if w != "w5"]
    skipped = {}
    for p in peers:
        if not p.probe():
            skipped[p.label] = p.missing
            log(f"bench: skipping {p.label}: {p.missing}")
    peers = [p for p in peers if p.missing is None]
    if args.smoke and not any(p.name == "coil" for p in peers):
        log(f"bench: smoke needs coil: {skipped.get('coil')}")
        print("smoke: 0 passed, 1 failed")
        return 1
    if not peers:
        log("bench: no peer to run")
        return 1

    versions = {p.label: p.version() for p in peers}
    m = machine()
    if args.scale:
        ns = [int(s) for s in args.scale_n.split(",") if s.strip()]
        cases = [(w, n) for n in sorted(ns) for w in ws]
    else:
        def sizes(w):
            if w == "w5":
                return WORKLOADS[w]["sizes"]
            if args.smoke:
                n = WORKLOADS[w]["smoke"]
            elif w == "w2":
                n = args.m or WORKLOADS[w]["default"]
            elif w == "w6":
                n = args.churn_n or WORKLOADS[w]["default"]
            else:
                n = args.n or WORKLOADS[w]["default"]
            return [n // 10, n] if w == "w6" else [n]
        cases = [(w, n) for w in ws for n in sizes(w)]
    load = ((args.w5_connections or (W5_SMOKE_CONNECTIONS if args.smoke else W5_CONNECTIONS)),
            (args.w5_seconds or (W5_SMOKE_SECONDS if args.smoke else W5_SECONDS)))

    log(f"bench: {', '.join(p.name for p in peers)} × {', '.join(w for w in ws)}, "
        f"{runs} run(s) each, interleaved")
    try:
        records = run_plan(peers, cases, runs, timeout, "scale" if args.scale else "run", load)
    except KeyboardInterrupt:
        log("bench: interrupted")
        return 130

    failures = [r for r in records if "error" in r and not r["error"].startswith("not run")]
    md, svg, svg5 = [], None, None
    if args.scale:
        md.append(scale_tables(records, peers, sorted(ns)))
        svg = chart_svg(records, peers, sorted(ns))
    else:
        all_rows, n_by_w, small_rows = {}, {}, {}
        svg5 = chart_w5_svg(records, peers, [n for w, n in cases if w == "w5"], load)
        for w, n in cases:
            if w == "w5" and svg5 and n == min(m for v, m in cases if v == "w5"):
                # the chart sits beside the tables (docs/ and bench/results/ alike)
                md.append("![W5 TCP echo: requests per second per server](bench-w5.svg)\n")
            small = None
            if w == "w6":
                if n == min(m for v, m in cases if v == "w6"):
                    small_rows = summarize(records, peers, w, n)
                    continue  # shown in the table of the largest N
                small = min(m for v, m in cases if v == "w6")
            table, rows = workload_table(records, peers, w, n, runs, load, small)
            md.append(table)
            all_rows[(w, n) if w == "w5" else w], n_by_w[w] = rows, n
        tl = target_lines(all_rows, n_by_w, small_rows)
        if tl:
            md.append(tl)
    body = "\n".join(md)
    print(body)

    if args.smoke:
        ran = {(r["peer"], r["w"], r["n"]) for r in records}
        bad = len({(r["peer"], r["w"], r["n"]) for r in failures})
        print(f"smoke: {len(ran) - bad} passed, {bad} failed")
        return 1 if bad else 0

    # Results: latest.json keeps the last main run and the last scale run.
    os.makedirs(RESULTS, exist_ok=True)
    data = load_previous()
    # A run of some workloads only (--only) keeps its own section, so that it
    # never replaces the tables of a full run.
    if args.scale:
        section = "scale"
    elif set(ws) == set(WORKLOADS):
        section = "main"
    else:
        section = "only-" + "-".join(ws)
    data[section] = dict(machine=m, versions=versions, skipped=skipped, runs=runs,
                         cases=cases, markdown=body, records=records,
                         argv=["bench/run"] + argv)
    with open(os.path.join(RESULTS, "latest.json"), "w") as f:
        json.dump(data, f, indent=1)
    doc = ["# Benchmark results", "",
           "Written by `bench/run`; see docs/performance.md for what is measured.", ""]
    parts = ([("main", "Workloads")]
             + [(k, "Workloads " + k[5:].replace("-", ", ")) for k in sorted(data) if k.startswith("only-")]
             + [("scale", "Scaling")])
    for sec, title in parts:
        if sec in data:
            d = data[sec]
            doc += [f"## {title} (`{' '.join(d.get('argv', ['bench/run']))}`)", "",
                    machine_md(d["machine"], d["versions"], d.get("skipped", {})), d["markdown"]]
    with open(os.path.join(RESULTS, "latest.md"), "w") as f:
        f.write("\n".join(doc))
    log(f"bench: results in {os.path.relpath(os.path.join(RESULTS, 'latest.md'))}")
    if args.scale and svg:
        with open(os.path.join(RESULTS, "bench-w4.svg"), "w") as f:
            f.write(svg)
        log(f"bench: chart in {os.path.relpath(os.path.join(RESULTS, 'bench-w4.svg'))}")
    if not args.scale and svg5:
        with open(os.path.join(RESULTS, "bench-w5.svg"), "w") as f:
            f.write(svg5)
        log(f"bench: chart in {os.path.relpath(os.path.join(RESULTS, 'bench-w5.svg'))}")

    if args.docs:
        perf = os.path.join(DOCS, "performance.md")
        try:
            with open(perf) as f:
                text = f.read()
        except OSError:
            text = "# Performance\n"
        block = machine_md(m, versions, skipped) + "\n" + body
        text = replace_block(text, section, block)
        with open(perf, "w") as f:
            f.write(text)
        if args.scale and svg:
            with open(os.path.join(DOCS, "bench-w4.svg"), "w") as f:
                f.write(svg)
        if not args.scale and svg5:
            with open(os.path.join(DOCS, "bench-w5.svg"), "w") as f:
                f.write(svg5)
        log("bench: docs/performance.md updated")
    # A wrong line is a bug in a program; so is any failure of coil's. A
    # peer that runs out of time or memory at a large N is a result.
    bad = [r for r in failures if r["peer"] == "coil" or r["error"].startswith("printed")]
    if bad:
        log(f"bench: {len(bad)} run(s) failed (see above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
