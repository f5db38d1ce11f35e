-- The interactive console (SPEC §8), driven through a real pseudo-terminal
-- by spec/support/pty_driver.py, and through plain pipes and files.
local coil = require "coil"
local proc = require "spec.support.proc"

local DRIVER = "spec/support/pty_driver.py"
local PROMPT = "\\n> " -- a fresh prompt (a regex for the driver)

local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p " .. tmp))
local history = tmp .. "/history"

local function terminal_env(history_file)
  local env = { "TERM=xterm", "HOME=" .. tmp,
                "COIL_HISTORY=" .. (history_file or history),
                "PATH=" .. os.getenv "PATH" }
  for _, name in ipairs { "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS" } do
    local value = os.getenv(name)
    if value then env[#env + 1] = name .. "=" .. value end
  end
  return env
end

-- Runs the console on a terminal with the steps ({verb, argument} pairs, see
-- the driver); returns ok, status code, signal, transcript.
local function session(steps, args, env)
  local lines = {}
  for _, step in ipairs(steps) do lines[#lines + 1] = step[1] .. " " .. step[2] end
  local cmd = { DRIVER, COIL_BIN }
  for _, a in ipairs(args or {}) do cmd[#cmd + 1] = a end
  local p = proc.start("python3", cmd, {
    stdin = table.concat(lines, "\n") .. "\n",
    env = env or terminal_env(),
  })
  local r = p:wait(90)
  assert.is_false(r.timed_out, "the pty driver did not end")
  local verdict, code, signal, pid, transcript =
    r.stdout:match "^(.-)\nSTATUS (%-?%d+) (%d+)\nPID (%d+)\nTRANSCRIPT\n(.*)$"
  assert(verdict, "no driver report: " .. r.stdout .. r.stderr)
  assert.is_false(proc.alive(pid), "coil is still running")
  transcript = transcript:gsub("\r", "")
  return verdict, tonumber(code), tonumber(signal), transcript
end

local function expect_ok(verdict, transcript)
  assert.equal("OK", verdict, "transcript:\n" .. transcript)
end

local function count(s, pattern)
  local n = 0
  for _ in s:gmatch(pattern) do n = n + 1 end
  return n
end

local TICKER = [[t = coil.spawn(function() coil.defer(function() print("ticker cleanup") end) while true do print("tick") coil.sleep(0.2) end end)\r]]

describe("the console on a terminal", function()
  -- line editing is there when the command was built with libedit
  local edit = proc.run({ "-e", "print(require('coil.console_edit').line_editing)" })
  local has_edit = edit.stdout == "true\n"

  it("shows the version line and the prompt, evaluates =expr and expressions", function()
    local verdict, code, _, transcript = session {
      { "expect", "coil [0-9.]+, Lua 5\\.4" }, { "expect", PROMPT },
      { "send", "=1+1\\r" }, { "expect", "\\n2\\r?\\n> " },
      { "send", "1+2, 'x'\\r" }, { "expect", "\\n3\\tx\\r?\\n> " },
      { "send", "\\x04" }, { "wait", "" },
    }
    expect_ok(verdict, transcript)
    assert.equal(0, code)
  end)

  it("continues an incomplete statement with >> and keeps globals, not locals", function()
    local verdict, code, _, transcript = session {
      { "expect", PROMPT },
      { "send", "function f(a)\\r" }, { "expect", "\\n>> " },
      { "send", "return a * 2\\r" }, { "expect", "\\n>> " },
      { "send", "end\\r" }, { "expect", PROMPT },
      { "send", "local y = 5\\r" }, { "expect", PROMPT },
      { "send", "=f(21), y\\r" }, { "expect", "\\n42\\tnil\\r?\\n> " },
      { "send", "_PROMPT = 'coil> '\\r" }, { "expect", "\\ncoil> " },
      { "send", "error('boom')\\r" }, { "expect", "stdin:1: boom" },
      { "expect", "\\ncoil> " },
      { "send", "\\x04" }, { "wait", "" },
    }
    expect_ok(verdict, transcript)
    assert.equal(0, code)
  end)

  it("awaits at the top level: coil.sleep(0.2)", function()
    local verdict, code, _, transcript = session {
      { "expect", PROMPT },
      { "send", "t0 = coil.now() coil.sleep(0.2) print('slept', coil.now() - t0 >= 0.19)\\r" },
      { "expect", "slept\\ttrue" }, { "expect", PROMPT },
      { "send", "=coil.gather(function() coil.sleep(0.05) return 1 end, function() return 2 end)\\r" },
      { "expect", "\\n1\\t2\\r?\\n> " },
      { "send", "\\x04" }, { "wait", "" },
    }
    expect_ok(verdict, transcript)
    assert.equal(0, code)
  end)

  it("lets a background ticker print above the prompt while it waits", function()
    local verdict, code, _, transcript = session {
      { "expect", PROMPT }, { "send", TICKER }, { "expect", PROMPT },
      { "send", "x = 12" }, -- typed, not entered
      { "expect", "tick" }, { "expect", "tick" }, { "expect", "tick" },
      -- with line editing, the typed part is drawn again below the output
      { "expect", has_edit and "> x = 12" or "> " },
      { "send", "3\\r" }, { "expect", PROMPT },
      { "send", "=x\\r" }, { "expect", "[\\n ]123\\r?\\n" },
      { "expect", PROMPT }, { "send", "\\x04" }, { "expect", "ticker cleanup" },
      { "wait", "" },
    }
    expect_ok(verdict, transcript)
    assert.equal(0, code)
    assert.is_true(count(transcript, "tick\n") >= 3)
  end)

  it("ends a background write that does not end its line before drawing the prompt", function()
    local verdict, code, _, transcript = session {
      { "expect", PROMPT },
      { "send", "coil.spawn(function() for i = 1, 3 do io.write('part', i) coil.sleep(0.2) end end)\\r" },
      { "expect", "part2\\r*\\n> " }, { "expect", "part3\\r*\\n> " },
      { "send", "\\x04" }, { "wait", "" },
    }
    expect_ok(verdict, transcript)
    assert.equal(0, code)
  end)

  it("cancels the statement on Ctrl+C during coil.sleep(10); the ticker goes on", function()
    local started = coil.now()
    local verdict, code, _, transcript = session {
      { "expect", PROMPT }, { "send", TICKER }, { "expect", PROMPT },
      { "send", "coil.defer(function() print('statement cleanup') end) print('sleep' .. 'ing') coil.sleep(10) print('not reached')\\r" },
      { "expect", "\\nsleeping" }, -- the statement runs
      { "sleep", "0.2" }, { "send", "\\x03" },
      { "expect", "statement cleanup" }, { "expect", PROMPT },
      { "expect", "tick" },
      { "send", "=t:done()\\r" }, { "expect", "[\\n ]false\\r?\\n" },
      { "expect", "tick" },
      { "expect", PROMPT }, { "send", "\\x04" }, { "expect", "ticker cleanup" },
      { "wait", "" },
    }
    expect_ok(verdict, transcript)
    assert.equal(0, code)
    assert.is_nil(transcript:find("not reached\n", 1, true))
    assert.is_nil(transcript:find("failed", 1, true))
    assert.is_true(coil.now() - started < 9.5, "Ctrl+C did not cut the sleep")
  end)

  it("interrupts a busy statement on Ctrl+C", function()
    local verdict, code, _, transcript = session {
      { "expect", PROMPT }, { "send", TICKER }, { "expect", PROMPT },
      { "send", "print('bu' .. 'sy') while true do end\\r" }, { "expect", "\\nbusy" },
      { "sleep", "0.2" }, { "send", "\\x03" }, { "expect", PROMPT },
      { "expect", "tick" },
      { "send", "=1+2\\r" }, { "expect", "[\\n ]3\\r?\\n" },
      { "expect", PROMPT }, { "send", "\\x04" }, { "expect", "ticker cleanup" },
      { "wait", "" },
    }
    expect_ok(verdict, transcript)
    assert.equal(0, code)
  end)

  it("lets a statement read the terminal itself, and Ctrl+C interrupt it", function()
    local verdict, code, _, transcript = session {
      { "expect", PROMPT }, { "send", "print('rea' .. 'ding') got = io.read()\\r" },
      { "expect", "\\nreading" }, { "sleep", "0.2" },
      { "send", "hello\\r" }, { "expect", PROMPT },
      { "send", "=got\\r" }, { "expect", "\\nhello\\r?\\n> " },
      -- through the loop, too
      { "send", "line = coil.io.stdin:read_line()\\r" }, { "sleep", "0.3" },
      { "send", "typed\\r" }, { "expect", PROMPT },
      { "send", "=line\\r" }, { "expect", "\\ntyped\\r?\\n> " },
      -- Ctrl+C cuts a read that blocks the loop short, as lua.c does
      { "send", "print('wait' .. 'ing') got = io.read()\\r" },
      { "expect", "\\nwaiting" }, { "sleep", "0.2" },
      { "send", "\\x03" }, { "expect", PROMPT },
      { "send", "=got\\r" }, { "expect", "\\nhello\\r?\\n> " },
      { "send", "\\x04" }, { "wait", "" },
    }
    expect_ok(verdict, transcript)
    assert.equal(0, code)
  end)

  it("discards the typed line on Ctrl+C at the prompt", function()
    local verdict, code, _, transcript = session {
      { "expect", PROMPT },
      { "send", "print('discarded')" }, { "sleep", "0.3" },
      { "send", "\\x03" }, { "expect", PROMPT },
      { "send", "print('kept')\\r" }, { "expect", "\\nkept\\r?\\n> " },
      -- at a continuation prompt, the whole statement goes
      { "send", "for i = 1, 2 do\\r" }, { "expect", "\\n>> " },
      { "send", "print('never')" }, { "sleep", "0.3" },
      { "send", "\\x03" }, { "expect", PROMPT },
      { "send", "=7\\r" }, { "expect", "\\n7\\r?\\n> " },
      { "send", "\\x04" }, { "wait", "" },
    }
    expect_ok(verdict, transcript)
    assert.equal(0, code)
    assert.is_nil(transcript:find("\ndiscarded\n", 1, true))
    assert.is_nil(transcript:find("\nnever\n", 1, true))
  end)

  it("runs the shutdown on Ctrl+D: the ticker's coil.defer runs, status 0", function()
    local verdict, code, signal, transcript = session {
      { "expect", PROMPT }, { "send", TICKER }, { "expect", "tick" },
      { "expect", PROMPT }, { "send", "\\x04" },
      { "expect", "ticker cleanup" }, { "wait", "" },
    }
    expect_ok(verdict, transcript)
    assert.equal(0, code)
    assert.equal(0, signal)
  end)

  it("exits with os.exit's status, after the cleanup", function()
    local verdict, code, _, transcript = session {
      { "expect", PROMPT }, { "send", TICKER }, { "expect", PROMPT },
      { "send", "os.exit(3)\\r" }, { "expect", "ticker cleanup" }, { "wait", "" },
    }
    expect_ok(verdict, transcript)
    assert.equal(3, code)
  end)

  for name, number in pairs { SIGTERM = 15, SIGHUP = 1 } do
    it("dies by " .. name .. " after the cleanup, as §3 says", function()
      local verdict, code, signal, transcript = session {
        { "expect", PROMPT }, { "send", TICKER }, { "expect", PROMPT },
        { "send", "abc" }, { "sleep", "0.2" }, { "signal", name },
        { "expect", "ticker cleanup" }, { "wait", "" },
      }
      expect_ok(verdict, transcript)
      assert.equal(-1, code)
      assert.equal(number, signal)
      assert.truthy(transcript:find("coil: " .. name .. " received", 1, true))
    end)
  end

  it("reports a background task's unseen error as it happens", function()
    local verdict, code, _, transcript = session {
      { "expect", PROMPT },
      { "send", "coil.spawn(function() coil.sleep(0.3) error('late boom') end)\\r" },
      { "expect", PROMPT },
      { "expect", "coil: task 'task-\\d+' failed and nobody awaited it: stdin:1: late boom" },
      { "expect", PROMPT },
      { "send", "\\x04" }, { "wait", "" },
    }
    expect_ok(verdict, transcript)
    assert.equal(0, code)
    assert.equal(1, count(transcript, "late boom\n"))
  end)

  it("reports an older task's error while a statement runs, not one the statement may await", function()
    local verdict, code, _, transcript = session {
      { "expect", PROMPT },
      { "send", "coil.spawn(function() coil.sleep(0.3) error('old boom') end)\\r" },
      { "expect", PROMPT },
      { "send", "t = coil.spawn(function() error('own boom') end) coil.sleep(1) print('caught', pcall(t.await, t))\\r" },
      { "expect", "nobody awaited it: stdin:1: old boom" },
      { "expect", "caught\\tfalse\\tstdin:1: own boom" }, { "expect", PROMPT },
      { "send", "\\x04" }, { "wait", "" },
    }
    expect_ok(verdict, transcript)
    assert.equal(0, code)
    assert.is_nil(transcript:find("nobody awaited it: stdin:1: own boom", 1, true))
  end)

  it("runs a script first with -i, then the console", function()
    local script = tmp .. "/script.lua"
    local f = assert(io.open(script, "w"))
    f:write "from_script = 'hello'\n"
    f:close()
    local verdict, code, _, transcript = session({
      { "expect", PROMPT }, { "send", "=from_script\\r" },
      { "expect", "\\nhello\\r?\\n> " }, { "send", "\\x04" }, { "wait", "" },
    }, { "-i", script })
    expect_ok(verdict, transcript)
    assert.equal(0, code)
  end)

  if has_edit then
    it("completes Lua names with Tab", function()
      local verdict, code, _, transcript = session {
        { "expect", PROMPT }, { "send", "tk = coil.spawn(function() end)\\r" },
        { "expect", PROMPT }, { "send", "n = tk:na\\t" }, { "expect", "tk:name" },
        { "send", "()\\r" }, { "expect", PROMPT },
        { "send", "pri\\t" }, { "expect", "print" },
        { "send", "(n)\\r" }, { "expect", "\\ntask-\\d+\\r?\\n> " },
        { "send", "coil.s\\t" }, { "expect", "coil.shield  coil.shutdown  coil.sleep" },
        { "expect", "> coil.s" }, { "send", "leep(0)\\r" }, { "expect", PROMPT },
        { "send", "\\x04" }, { "wait", "" },
      }
      expect_ok(verdict, transcript)
      assert.equal(0, code)
    end)

    it("says so when it cannot save the history", function()
      local verdict, code, _, transcript = session({
        { "expect", PROMPT }, { "send", "x = 1\\r" }, { "expect", PROMPT },
        { "send", "\\x04" },
        { "expect", "coil: console: cannot save the history in " .. tmp .. "/no/such/dir" },
        { "wait", "" },
      }, nil, terminal_env(tmp .. "/no/such/dir/history"))
      expect_ok(verdict, transcript)
      assert.equal(0, code)
    end)

    it("recalls history with the up arrow, kept in COIL_HISTORY", function()
      os.remove(history)
      local verdict, code, _, transcript = session {
        { "expect", PROMPT }, { "send", "hist_value = 40 + 2\\r" },
        { "expect", PROMPT }, { "send", "\\x04" }, { "wait", "" },
      }
      expect_ok(verdict, transcript)
      assert.equal(0, code)
      local f = assert(io.open(history))
      assert.truthy(f:read("a"):find("hist_value", 1, true))
      f:close()
      verdict, code, _, transcript = session {
        { "expect", PROMPT }, { "send", "\\x1b[A" },
        { "expect", "hist_value = 40 \\+ 2" }, { "send", "\\r" },
        { "expect", PROMPT }, { "send", "=hist_value\\r" },
        { "expect", "\\n42\\r?\\n> " }, { "send", "\\x04" }, { "wait", "" },
      }
      expect_ok(verdict, transcript)
      assert.equal(0, code)
    end)
  end
end)

describe("the console under valgrind", function()
  -- (the sanitizer build checks the same paths with ASan instead)
  local skip = os.getenv("COIL_SANITIZED") and pending or it

  local function assert_clean(log)
    local f = assert(io.open(log))
    local text = f:read("a")
    f:close()
    local definite = text:match "definitely lost: ([%d,]+) bytes"
    assert.is_true(definite == nil or definite == "0", text)
    assert.matches("ERROR SUMMARY: 0 errors", text)
  end

  skip("ends on Ctrl+D with line editing and a background task: no leak", function()
    local log = tmp .. "/valgrind.log"
    local p = proc.start("python3", { DRIVER, "/usr/bin/valgrind", "--leak-check=full",
      "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
      "--log-file=" .. log, COIL_BIN }, {
      stdin = table.concat({
        "expect " .. PROMPT, "send " .. TICKER, "expect tick",
        "send =1+1\\r", "expect [\\n ]2\\r?\\n", "expect " .. PROMPT, "send \\x04",
        "expect ticker cleanup", "wait ",
      }, "\n") .. "\n",
      env = terminal_env(),
    })
    local r = p:wait(120)
    assert.is_false(r.timed_out)
    assert.matches("^OK\nSTATUS 0 0\nPID %d+\n", r.stdout)
    assert_clean(log)
  end)

  skip("ends at the end of a piped input: no leak", function()
    local log = tmp .. "/valgrind-pipe.log"
    local r = proc.start("/usr/bin/valgrind", { "--leak-check=full",
      "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
      "--log-file=" .. log, COIL_BIN, "-i" }, {
      stdin = "coil.spawn(function() coil.sleep(100) end)\nerror('x')\n=1\n",
    }):wait(120)
    assert.equal(0, r.code)
    assert_clean(log)
  end)
end)

describe("the console without a terminal", function()
  local input = table.concat({
    "x = 1", "=x+1", "local y = 2", "print(y)", "function f(a)", "  return a*2",
    "end", "print(f(21))", "error('boom')", "1+", "2", "return 1, nil, 3",
    "_PROMPT = 'lua> '", "x", "for i = 1, 2 do", "",
  }, "\n")

  local function lua_says()
    local path = tmp .. "/input.lua"
    local f = assert(io.open(path, "w"))
    f:write(input)
    f:close()
    local r = proc.start("sh", { "-c", "lua5.4 -i < " .. path }):wait(20)
    return r.stdout:gsub("^[^\n]*\n", ""), path
  end

  it("coil -i < file prints what lua5.4 -i < file prints, prompts included", function()
    local expected, path = lua_says()
    local r = proc.start("sh", { "-c", COIL_BIN .. " -i < " .. path }):wait(20)
    assert.equal(0, r.code)
    assert.equal(expected, (r.stdout:gsub("^[^\n]*\n", "")))
    assert.truthy(r.stdout:find("^coil "))
    assert.truthy(r.stderr:find("stdin:1: boom", 1, true))
  end)

  it("prints errors as lua5.4 -i does", function()
    local errors = table.concat({
      "error('boom')", "local function f() error('deep') end f()",
      "error(setmetatable({}, {__tostring = function() return 'custom' end}))",
      "error({})", "error()", "1+", "x = = 2", "",
    }, "\n")
    local lua = proc.start("lua5.4", { "-i" }, { stdin = errors }):wait(20)
    local r = proc.coil({ "-i" }, { stdin = errors }):wait(20)
    assert.equal(0, r.code)
    assert.equal(lua.stderr, r.stderr)
    assert.equal((lua.stdout:gsub("^[^\n]*\n", "")), (r.stdout:gsub("^[^\n]*\n", "")))
  end)

  it("reads a pipe the same way", function()
    local expected = lua_says()
    local r = proc.coil({ "-i" }, { stdin = input }):wait(20)
    assert.equal(0, r.code)
    assert.equal(expected, (r.stdout:gsub("^[^\n]*\n", "")))
  end)

  it("awaits at the top level and shuts background tasks down at the end of input", function()
    local r = proc.coil({ "-i" }, { stdin = table.concat({
      "coil.spawn(function() coil.defer(function() print('bg cleanup') end) coil.sleep(100) end)",
      "coil.sleep(0.1) print('after sleep')",
    }, "\n") .. "\n" }):wait(20)
    assert.equal(0, r.code)
    assert.truthy(r.stdout:find("after sleep\n", 1, true))
    assert.truthy(r.stdout:find("bg cleanup\n", 1, true))
  end)

  it("opens from a script with require('coil.console').run(), which returns at the end of input", function()
    local r = proc.coil({ "-e", "require('coil.console').run() print('after console')" }, {
      stdin = "=1+1\nrequire('coil.console').run()\nlocal function f() error('deep') end return f()\n",
    }):wait(20)
    assert.equal(0, r.code)
    assert.equal("> =1+1\n2\n> require('coil.console').run()\n"
      .. "> local function f() error('deep') end return f()\n> \nafter console\n", r.stdout)
    assert.truthy(r.stderr:find("coil: the console is already running", 1, true))
    assert.truthy(r.stderr:find("stdin:1: deep\nstack traceback:\n\t[C]: in function 'error'\n"
      .. "\tstdin:1: in function <stdin:1>\n\t(...tail calls...)\n\t[C]: in ?\n", 1, true))
  end)

  it("still reads a script from a non-terminal stdin without -i", function()
    local r = proc.coil({}, { stdin = "print('as a script')\n" }):wait(20)
    assert.equal(0, r.code)
    assert.equal("as a script\n", r.stdout)
  end)
end)

teardown(function() os.execute("rm -rf '" .. tmp .. "'") end)
