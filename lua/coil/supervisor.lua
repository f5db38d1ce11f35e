--- `coil --workers N script.lua` (SPEC §9): the main task of a supervisor
-- that runs N copies of the command line as worker processes, each a full
-- coil process with COIL_WORKER = 1..N and the supervisor's own
-- NOTIFY_SOCKET (so coil.service.ready(), or a first listen, tells it the
-- worker is up).
--
-- It forwards SIGINT, SIGTERM and SIGHUP to every worker, waits for each
-- one's graceful shutdown and then ends by that signal; restarts a worker
-- that died on its own with a growing delay; and on SIGUSR2 replaces the
-- workers one at a time, each new one up before the old one is asked to
-- stop. The supervisor runs no script code itself.
local core = require "coil.core"
local uv = require "luv"
local service = require "coil.service"

local pairs, ipairs, next, pcall, tonumber, tostring = pairs, ipairs, next, pcall, tonumber, tostring
local loadfile = loadfile
local format, min = string.format, math.min
local spawn, sleep, event, report = core.spawn, core.sleep, core.event, core.report

-- How long a replacement may take to come up before it is given up.
local UP_TIMEOUT = 60
-- Restart delays: from FIRST_DELAY, doubled each time, at most MAX_DELAY;
-- back to FIRST_DELAY once a worker stayed up for STABLE seconds.
local FIRST_DELAY, MAX_DELAY, STABLE = 0.1, 10, 10

local signal_names = {}
for name, value in pairs(uv.constants or {}) do
  if name:match "^SIG" then signal_names[value] = name end
end

--- Waits for ev at most s seconds; whether it was set.
local function wait_event(ev, s)
  local ok, err = pcall(core.timeout, s, ev.wait, ev)
  if not ok and not core.is_timeout(err) then error(err, 0) end
  return ok
end

--- "exited with status 3", "was killed by SIGSEGV"
local function describe(w)
  if w.signal and w.signal ~= 0 then
    return "was killed by " .. (signal_names[w.signal] or ("signal " .. w.signal))
  end
  return "exited with status " .. tostring(w.status)
end

--- The worker's environment: ours, with its number and our notify socket,
-- without what systemd meant for the supervisor alone.
local function environment(slot, notify_address)
  local skip = { COIL_WORKER = true, NOTIFY_SOCKET = true, WATCHDOG_USEC = true,
                 WATCHDOG_PID = true, LISTEN_PID = true, LISTEN_FDS = true,
                 LISTEN_FDNAMES = true }
  local list = {}
  for name, value in pairs(uv.os_environ()) do
    if not skip[name] then list[#list + 1] = name .. "=" .. value end
  end
  list[#list + 1] = "COIL_WORKER=" .. slot
  list[#list + 1] = "NOTIFY_SOCKET=" .. notify_address
  return list
end

--- Checks the --workers value; returns the count, or nil and the message.
local function worker_count(value)
  local n = value and value:match "^%d+$" and tonumber(value)
  if not n or n > 1024 then
    return nil, format("--workers expects a number of worker processes from 0 " ..
                       "(one per core) to 1024, got '%s'", tostring(value))
  end
  if n == 0 then
    n = uv.available_parallelism and uv.available_parallelism() or #uv.cpu_info()
  end
  return n
end

-- (argv, script, actions, ignore_env) as coil.cli gets them, then the index
-- of --workers' value in argv; the actions and -E are the workers' business
return function(argv, script, _, _, windex)
  local n, err = worker_count(argv[windex])
  if not n then
    report(err)
    return 1
  end
  if not script or script == 0 or argv[script] == "-" then -- 0: stdin
    report "--workers needs a script file"
    return 1
  end
  -- a script that cannot load would only be restarted for ever: say so once
  local chunk, load_err = loadfile(argv[script])
  if not chunk then
    report(load_err)
    return 1
  end

  -- the workers' command line: ours without --workers N
  local exe, args, grace, quiet = uv.exepath(), {}, 5, false
  for i = 1, #argv do
    if i ~= windex and i ~= windex - 1 then args[#args + 1] = argv[i] end
    if i < script then
      if argv[i] == "--grace" then grace = tonumber(argv[i + 1]) or grace end
      if argv[i] == "--quiet" then quiet = true end
      if argv[i] == "-i" then
        report "--workers cannot be used with -i (the console)"
        return 1
      end
    end
  end

  local fd, address = core.notify_listen()
  if not fd then
    report("--workers: cannot open the notify socket: " .. address)
    return 1
  end

  local by_pid = {}   -- pid -> worker, while it runs
  local slots = {}    -- slot -> the worker serving it
  local stop = event()
  local stopping      -- the signal we stop for
  local up_changed = event() -- set whenever a worker comes up

  -- READY=1 from a worker (or its first listen) marks it up
  local poll = uv.new_socket_poll(fd)
  poll:start("r", function()
    while true do
      local text, pid = core.notify_recv(fd)
      if not text then break end
      local w = by_pid[pid]
      if w and text:match "%f[^\n%z]READY=1%f[\n%z]" then
        w.up:set()
        w.moved:set()
        up_changed:set()
      end
    end
  end)

  local function start(slot)
    -- moved: set when it comes up or exits
    local w = { slot = slot, up = event(), exited = event(), moved = event(),
                started = core.now() }
    local handle, pid = uv.spawn(exe, {
      args = args, env = environment(slot, address), stdio = { 0, 1, 2 },
      detached = true, -- its own session: a terminal's Ctrl+C comes through us
    }, function(status, signal)
      w.status, w.signal = status, signal
      by_pid[w.pid] = nil
      if not w.handle:is_closing() then w.handle:close() end
      w.exited:set()
      w.moved:set()
    end)
    if not handle then return nil, pid end
    w.handle, w.pid = handle, pid
    by_pid[pid] = w
    return w
  end

  local function signal_all(name)
    for pid in pairs(by_pid) do uv.kill(pid, name:lower()) end
  end

  -- One task per slot: keep a worker running there until we stop.
  local function run_slot(slot)
    local delay = FIRST_DELAY
    while not stopping do
      local w = slots[slot]
      if not w then
        local e
        w, e = start(slot)
        if not w then
          report(format("cannot start worker %d: %s; trying again in %.1f s", slot, e, delay))
        end
        slots[slot] = w
      end
      if w then
        w.exited:wait()
        if slots[slot] == w and not stopping then
          slots[slot] = nil
          if core.now() - w.started >= STABLE then delay = FIRST_DELAY end
          report(format("worker %d (pid %d) %s; starting it again in %.1f s",
                        slot, w.pid, describe(w), delay))
        end
      end
      if not slots[slot] and not stopping then
        wait_event(stop, delay)
        delay = min(delay * 2, MAX_DELAY)
      end
    end
  end

  -- SIGUSR2: a rolling replacement, one slot at a time.
  local reloading, reload_again = false, false
  local function replace_all()
    for slot = 1, n do
      if stopping then return end
      local new, e = start(slot)
      if not new then
        report(format("reload: cannot start a new worker %d: %s; keeping the old one", slot, e))
        return
      end
      -- a stop kills the new one too, so it moves
      local moved = wait_event(new.moved, UP_TIMEOUT)
      if not (new.up:is_set() and not new.exited:is_set()) then
        if not new.exited:is_set() then
          uv.kill(new.pid, "sigterm")
          new.exited:wait()
        end
        if not stopping then
          report(format("reload: the new worker %d (pid %d) %s; keeping the old one",
                        slot, new.pid, moved and describe(new) .. " before it was up"
                                       or "was not up within " .. UP_TIMEOUT .. " s"))
        end
        return
      end
      -- the one serving the slot now (it may have been restarted meanwhile)
      local old = slots[slot]
      slots[slot] = new
      if old and not old.exited:is_set() then
        uv.kill(old.pid, "sigterm")
        old.exited:wait()
      end
    end
  end
  local reload = core.on_signal("SIGUSR2", function()
    if reloading then reload_again = true return end
    reloading = true
    repeat
      reload_again = false
      replace_all()
    until not reload_again or stopping
    reloading = false
  end)

  -- SIGINT / SIGTERM / SIGHUP: forwarded, every one of them (a second
  -- Ctrl+C forces the workers, a third kills them, as it would coil).
  local bound
  local function on_interrupt(name)
    if not stopping then
      stopping = name
      local count = 0
      for _ in pairs(by_pid) do count = count + 1 end
      if not quiet then
        report(format("%s received, stopping %d worker(s)", name, count))
      end
      -- the workers' shutdown may outlast systemd's watchdog: say how long
      local watchdog = tonumber(os.getenv "WATCHDOG_USEC" or "")
      local stop_usec = (2 * grace + 5) * 1e6
      if watchdog and stop_usec > watchdog then
        service.notify(format("STOPPING=1\nEXTEND_TIMEOUT_USEC=%d\n", stop_usec))
      else
        service.notify "STOPPING=1\n"
      end
      stop:set()
      -- the workers bound their own shutdown; this bounds a stuck one
      bound = spawn(function()
        sleep(2 * grace + 5)
        for pid, w in pairs(by_pid) do
          report(format("worker %d (pid %d) did not stop; killing it", w.slot, pid))
          uv.kill(pid, "sigkill")
        end
      end):name("worker stop bound")
    end
    signal_all(name)
  end
  local interrupts = {}
  for _, name in ipairs { "SIGINT", "SIGTERM", "SIGHUP" } do
    interrupts[#interrupts + 1] = core.on_signal(name, on_interrupt)
  end

  -- Should the supervisor itself be shut down (an error in it), the
  -- workers go first.
  core.on_shutdown(function()
    signal_all "sigterm"
    for _, w in pairs(by_pid) do w.exited:wait() end
  end)

  -- As PID 1 (a container's init) orphans are ours to reap: on SIGCHLD,
  -- collect every child that is not a worker (libuv reaps those) and has
  -- exited. /proc lists our children.
  local chld
  if uv.os_getpid() == 1 then
    chld = uv.new_signal()
    chld:start("sigchld", function()
      local f = io.open "/proc/1/task/1/children"
      if not f then return end
      for pid in f:read("a"):gmatch "%d+" do
        pid = tonumber(pid)
        if not by_pid[pid] then core.reap(pid) end
      end
      f:close()
    end)
    chld:unref()
  end

  local tasks = {}
  for slot = 1, n do
    tasks[slot] = spawn(run_slot, slot):name("worker slot " .. slot)
  end

  -- up once every first worker is: the manager above us hears READY=1
  local all_up = spawn(function()
    for slot = 1, n do
      while not (slots[slot] and slots[slot].up:is_set()) do
        if stopping then return end
        up_changed:clear()
        core.race(function() up_changed:wait() end, function() stop:wait() end)
      end
    end
    service.ready()
    service.status(format("%d worker(s) up", n))
  end):name("workers up")

  core.gather(tasks)
  while next(by_pid) do
    local _, w = next(by_pid)
    w.exited:wait()
  end
  for _, h in ipairs(interrupts) do h:close() end
  reload:close()
  if chld then chld:close() end
  poll:close()
  core.close_fd(fd)
  all_up:cancel()
  if bound then bound:cancel() end
  core.end_by_signal(stopping or "SIGTERM")
end
