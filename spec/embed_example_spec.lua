-- examples/embed: the C plugin host, built with its own run script against
-- the coil build under test, and run end to end as a real process: it loads
-- every plugin of a folder, sends them events, survives the misbehaving
-- ones, reloads a plugin whose file changed, and on SIGINT/SIGTERM shuts
-- every plugin down (each one's cleanup runs), closes its loop and dies by
-- the signal.
local coil = require "coil"
local uv = require "luv"
local proc = require "spec.support.proc"

local BUILD = COIL_BIN:match "^(.*)/[^/]*$" or "."
local HOST = BUILD .. "/embed-host"
local PLUGINS = "examples/embed/plugins"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read "a"
  f:close()
  return text
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- A fresh folder with the example's plugins and `extra` ({name = code}).
local function plugin_dir(extra)
  local dir = os.tmpname()
  os.remove(dir)
  assert(uv.fs_mkdir(dir, tonumber("755", 8)))
  for _, name in ipairs { "clock.lua", "greedy.lua", "shout.lua" } do
    write(dir .. "/" .. name, read(PLUGINS .. "/" .. name))
  end
  for name, code in pairs(extra or {}) do write(dir .. "/" .. name, code) end
  return dir
end

local function remove_dir(dir)
  local req = uv.fs_scandir(dir)
  while req do
    local name = uv.fs_scandir_next(req)
    if not name then break end
    os.remove(dir .. "/" .. name)
  end
  uv.fs_rmdir(dir)
end

-- Waits (up to 20 s) until check() is true; fails naming `what`.
local function wait_until(p, check, what)
  local deadline = coil.now() + 20
  while not check() do
    if p.code or coil.now() > deadline then
      error(("no %s in the host's output:\n%s\n%s"):format(what, p.stdout,
                                                          p.stderr), 3)
    end
    coil.sleep(0.05)
  end
end

-- Waits until the process's stdout matches pattern.
local function wait_match(p, pattern)
  wait_until(p, function() return p.stdout:match(pattern) end,
             ("%q"):format(pattern))
end

-- Where the last occurrence of `marker` (plain text) in stdout ends,
-- waiting for one.
local function after(p, marker)
  local from
  wait_until(p, function() return p.stdout:find(marker, 1, true) end, marker)
  repeat
    local _, e = p.stdout:find(marker, (from or 0) + 1, true)
    from = e or from
  until not e
  return from + 1
end

-- Each round's line: "host: tick N: <replies>", in the order the rounds
-- completed (a late reply can put round N after round N+1); the replies in
-- a line are in the order the plugins answered.
local function rounds(text)
  return text:gmatch "host: tick (%d+):([^\n]*)\n"
end

-- Waits for a round line after position `from` for which accept(replies)
-- is true; returns N and the replies.
local function wait_round(p, from, accept, what)
  local tick, replies
  wait_until(p, function()
    for n, r in rounds(p.stdout:sub(from)) do
      if accept(r) then
        tick, replies = tonumber(n), r
        return true
      end
    end
  end, what)
  return tick, replies
end

local function has(text, plain) return text:find(plain, 1, true) ~= nil end

local function count(text, plain)
  local n, from = 0, 1
  while true do
    local s, e = text:find(plain, from, true)
    if not s then return n end
    n, from = n + 1, e + 1
  end
end

-- Starts the host on dir; a test that fails half-way leaves no host behind.
local function start_host(dir)
  local p = proc.start(HOST, { dir })
  finally(function()
    if not p.code then
      p:kill "sigkill"
      p:wait(5)
    end
    remove_dir(dir)
  end)
  return p
end

local function assert_no_sanitizer_report(r)
  assert.not_matches("Sanitizer", r.stderr)
  assert.not_matches("runtime error:", r.stderr)
end

describe("examples/embed, the C plugin host", function()
  lazy_setup(function()
    -- /usr/bin/env passes our environment on, plus where to build
    local p = proc.start("/usr/bin/env", {
      "COIL_BUILD=" .. BUILD, "COIL_HOST=" .. HOST,
      "examples/embed/run", "--build-only" })
    local r = p:wait(300)
    assert.equal(0, r.code, r.stdout .. r.stderr)
  end)

  it("sends events, outlives greedy, reloads a changed plugin, and on " ..
     "SIGINT cleans every plugin up and dies by SIGINT", function()
    local dir = plugin_dir()
    local p = start_host(dir)
    assert.is_true(p:wait_for "host: ready: 3 plugin%(s%)", p.stderr)

    -- every plugin answers events; the replies are collected per round
    local _, first = wait_round(p, 1, function(r) return has(r, "greedy=") end,
                                "a round greedy answered")
    assert.matches("greedy=fine so far", first)
    assert.matches("clock=%d+ ticks", first)
    assert.matches("shout=TICK %d+", first)
    -- greedy blows its memory limit: only its runtime ends, with status 1
    -- (its cleanup ran), and the others keep answering events
    local closed = after(p, "host: greedy closed with status 1\n")
    local gone, later = wait_round(p, closed, function(r)
      return not has(r, "greedy")
    end, "a round without greedy")
    assert.matches("clock=%d+ ticks", later)
    assert.matches(" shout", later)
    assert.matches("greedy: cleanup ran after %d+ events", p.stdout)
    assert.matches("greedy failed: ", p.stdout)
    assert.matches("coil: memory limit of 4194304 bytes exceeded", p.stderr)
    -- a failing event call is reported to the host; shout carries on
    wait_match(p, "shout failed: shout: %d+ is too loud\n")

    -- replacing clock.lua (as an editor does) reloads that plugin alone,
    -- and the new code answers the events from then on
    local code = read(dir .. "/clock.lua"):gsub('" ticks"', '" ticks, edited"')
    write(dir .. "/.clock.tmp", code)
    assert(os.rename(dir .. "/.clock.tmp", dir .. "/clock.lua"))
    wait_match(p, "host: clock closed with status 0, reloading\n")
    wait_round(p, 1, function(r) return has(r, "ticks, edited") end,
               "a round the new clock answered")
    assert.equal(2, count(p.stdout, "clock: started"))
    assert.equal(1, count(p.stdout, "shout: started"))

    p:kill "sigint"
    local r = p:wait(30)
    assert.is_false(r.timed_out, r.stderr)
    assert.equal(2, r.signal) -- died by SIGINT, as a shell expects
    assert.matches("host: SIGINT: shutting down 2 plugin%(s%)\n", r.stdout)
    -- every plugin's cleanup ran: clock's twice (reload and shutdown)
    assert.equal(2, count(r.stdout, "clock: cleanup ran after"))
    assert.equal(1, count(r.stdout, "shout: cleanup ran after"))
    assert.equal(1, count(r.stdout, "greedy: cleanup ran after"))
    assert.matches("host: SIGINT.*host: clock closed with status 0\n", r.stdout)
    assert.matches("host: SIGINT.*host: shout closed with status 0\n", r.stdout)
    assert.matches("host: all plugins closed; loop closed: ok\n$", r.stdout)
    assert_no_sanitizer_report(r)
    for n, replies in rounds(r.stdout) do -- greedy never came back
      if tonumber(n) > gone then assert.not_matches("greedy", replies) end
    end
  end)

  it("logs a plugin that cannot load, fails or deadlocks, goes on, and " ..
     "dies by SIGTERM", function()
    local dir = plugin_dir {
      ["broken.lua"] = "x = = 1\n",
      ["failing.lua"] = "error('boom at start')\n",
      ["stuck.lua"] = [[
        local coil = require "coil"
        coil.defer(function() print("stuck: cleanup ran") end)
        coil.event():wait()  -- nothing will ever set it: a deadlock
      ]],
    }
    local p = start_host(dir)
    assert.is_true(p:wait_for "host: ready: 5 plugin%(s%)", p.stderr)
    assert.matches("host: cannot load broken: [^\n]*unexpected symbol",
                   p.stdout)
    wait_match(p, "host: failing closed with status 1\n")
    wait_match(p, "host: stuck closed with status 1\n")
    assert.matches("stuck: cleanup ran\n", p.stdout)
    local _, replies = wait_round(p, after(p, "host: stuck closed"),
                                  function() return true end, "a round")
    assert.matches("clock=%d+ ticks", replies)
    assert.matches(" shout", replies)

    p:kill "sigterm"
    local r = p:wait(30)
    assert.is_false(r.timed_out, r.stderr)
    assert.equal(15, r.signal)
    assert.matches("boom at start", r.stderr)
    assert.matches("deadlock: 1 task%(s%) waiting", r.stderr)
    assert.matches("host: SIGTERM: shutting down", r.stdout)
    assert.matches("clock: cleanup ran after", r.stdout)
    assert.matches("shout: cleanup ran after", r.stdout)
    assert.matches("host: all plugins closed; loop closed: ok\n$", r.stdout)
    assert_no_sanitizer_report(r)
  end)
end)
