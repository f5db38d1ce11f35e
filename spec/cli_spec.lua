-- The coil command (SPEC §2, §6), run as a real subprocess on fixtures.
local proc = require "spec.support.proc"

local function run(...)
  return proc.run({ ... })
end

local function fixture(name)
  return "spec/fixtures/" .. name .. ".lua"
end

-- Every message coil writes starts with "coil: "; continuation lines are
-- indented.
local function assert_coil_messages(stderr)
  for line in stderr:gmatch "[^\n]+" do
    assert.is_true(line:match "^coil: " ~= nil or line:match "^%s" ~= nil,
                   "not a coil message line: " .. line)
  end
end

describe("the coil command", function()
  describe("options", function()
    it("-v prints the versions of coil, Lua, libuv and luv", function()
      local r = run("-v")
      assert.equal(0, r.code)
      assert.matches("^coil %d+%.%d+%.%d+, Lua 5%.4%.%d+, libuv 1%.%d+%.%d+, luv [%d.%-]+; MIT licence, Copyright %(c%) 2026 the coil authors\n$", r.stdout)
    end)

    it("-e runs a chunk in the main task, which may await", function()
      local r = run("-e", 'local coil = require "coil"; coil.sleep(0.01); print("slept")')
      assert.equal(0, r.code)
      assert.equal("slept\n", r.stdout)
      assert.equal("", r.stderr)
    end)

    it("-e chunks and -l modules run in order, before the script", function()
      local r = run("-e", "x = 1", "-l", "string", "-e", "print(x, string.rep('a', 2))",
                    "-lstr=string", fixture "cli_args", "a")
      assert.equal(0, r.code)
      assert.matches("^1\taa\nn\t1\ta\n", r.stdout)
    end)

    it("- reads the script from standard input", function()
      local r = proc.coil({ "-", "x" }, { stdin = "print('from stdin', ...)" }):wait()
      assert.equal(0, r.code)
      assert.equal("from stdin\tx\n", r.stdout)
    end)

    it("-- stops handling options", function()
      local r = run("--", fixture "cli_args", "-e", "--quiet")
      assert.equal(0, r.code)
      assert.matches("n\t2\t%-e\t%-%-quiet\n", r.stdout)
    end)

    it("rejects an unknown option in one line", function()
      local r = run("-x")
      assert.equal(1, r.code)
      assert.matches("^coil: unrecognized option '%-x'[^\n]*\n$", r.stderr)
    end)

    it("rejects a bad --grace in one line", function()
      for _, bad in ipairs { "soon", "-1", "" } do
        local r = run("--grace", bad, "-e", "")
        assert.equal(1, r.code)
        assert.matches("^coil: %-%-grace expects a number of seconds, got '.*'[^\n]*\n$", r.stderr)
      end
      local r = run("--grace")
      assert.equal(1, r.code)
      assert.matches("^coil: '%-%-grace' needs a number of seconds", r.stderr)
    end)

    it("-e and -l need their argument", function()
      local r = run("-e")
      assert.equal(1, r.code)
      assert.matches("^coil: '%-e' needs argument", r.stderr)
    end)
  end)

  describe("arg and ...", function()
    it("are set exactly as the stock lua sets them", function()
      local r = run("--quiet", fixture "cli_args", "one", "two")
      assert.equal(0, r.code)
      local bin = COIL_BIN
      assert.equal(table.concat({
        "n\t2\tone\ttwo",
        "-2\t" .. bin,
        "-1\t--quiet",
        "0\t" .. fixture "cli_args",
        "1\tone",
        "2\ttwo",
      }, "\n") .. "\n", r.stdout)
    end)

    it("agree with lua5.4 on the same command line", function()
      local ours = run(fixture "cli_args", "p", "q").stdout
      local stock = proc.start("/usr/bin/lua5.4", { fixture "cli_args", "p", "q" }):wait().stdout
      assert.equal(stock:gsub("[^\n]*lua5%.4", "BIN"), ours:gsub("[^\n]*" .. COIL_BIN:gsub("%p", "%%%0"), "BIN"))
    end)
  end)

  describe("exit status", function()
    it("is 0 when the main chunk returns nothing and every task finished", function()
      local r = run("-e", "local c = require 'coil'; c.spawn(function() c.sleep(0.01) print('done') end)")
      assert.equal(0, r.code)
      assert.equal("done\n", r.stdout)
    end)

    it("is the integer the main chunk returned, after the other tasks", function()
      local r = run(fixture "cli_status_int")
      assert.equal(5, r.code)
      assert.equal("other task finished\n", r.stdout)
    end)

    it("maps booleans as os.exit does", function()
      assert.equal(1, run(fixture "cli_status_bool").code)
      assert.equal(0, run("-e", "return true").code)
    end)

    it("os.exit is graceful: cleanup runs, code after it never does", function()
      local r = run(fixture "cli_os_exit")
      assert.equal(4, r.code)
      assert.matches("main cleanup ran", r.stdout)
      assert.matches("other cleanup ran", r.stdout)
      assert.not_matches("never printed", r.stdout)
      assert.equal("", r.stderr)
    end)

    it("keeps the first request's status", function()
      assert.equal(3, run(fixture "cli_first_status_wins").code)
    end)

    it("coil.shutdown works from a plain function and a luv callback", function()
      for _, how in ipairs { "plain", "timer" } do
        local r = run(fixture "cli_shutdown_plain", how)
        assert.equal(3, r.code, how)
        assert.equal("cleanup ran\n", r.stdout, how)
        assert.equal("", r.stderr, how)
      end
    end)

    it("is 1 after an uncaught error in the main task, with a traceback", function()
      local r = run(fixture "cli_error")
      assert.equal(1, r.code)
      assert.matches("^coil: spec/fixtures/cli_error%.lua:7: boom\n", r.stderr)
      assert.matches("stack traceback of task 'main'", r.stderr)
      assert.matches("in local 'inner'", r.stderr)
      assert.equal("other task cleaned up\n", r.stdout)
      assert_coil_messages(r.stderr)
    end)

    it("is 1 for a missing script, in one line", function()
      local r = run("spec/fixtures/no_such_script.lua")
      assert.equal(1, r.code)
      assert.matches("^coil: cannot open spec/fixtures/no_such_script%.lua[^\n]*\n$", r.stderr)
    end)

    it("is 1 for a syntax error, in one line", function()
      local r = run("-e", "x = = 1")
      assert.equal(1, r.code)
      assert.matches("^coil: %(command line%):1: [^\n]*near '='\n$", r.stderr)
    end)

    it("is 1 on a deadlock, which names each waiting task and runs cleanup", function()
      local r = run(fixture "cli_deadlock")
      assert.equal(1, r.code)
      assert.matches("^coil: deadlock: 2 task%(s%) waiting with nothing to wake them\n", r.stderr)
      assert.matches("task 'main' waits in wait at:", r.stderr)
      assert.matches("task 'waiter' waits in wait at:", r.stderr)
      assert.matches("cli_deadlock%.lua:5", r.stderr)
      assert.equal("waiter cleanup ran\n", r.stdout)
      assert_coil_messages(r.stderr)
    end)
  end)

  describe("bad input in scripts", function()
    for _, case in ipairs {
      { "coil.sleep(-1)", "^coil: sleep expects a non%-negative number of seconds, got %-1\n" },
      { "coil.sleep('x')", "^coil: sleep expects a number of seconds, got string\n" },
      { "coil.current():await()", "^coil: a task cannot await itself\n" },
      { "coil.uv.new_timer():start(1, 0, function() coil.sleep(1) end)",
        "^coil: error in a luv callback: coil: sleep must be called from inside a task\n" },
    } do
      it("reports " .. case[1] .. " clearly, status 1", function()
        local r = run("-e", "local coil = require 'coil'; " .. case[1])
        assert.equal(1, r.code)
        assert.matches(case[2], r.stderr)
        assert_coil_messages(r.stderr)
      end)
    end
  end)

  describe("require", function()
    it("may await while a module loads", function()
      local r = run(fixture "cli_require_awaits")
      assert.equal(0, r.code)
      assert.equal("loaded after a sleep\n", r.stdout)
    end)

    it("fails like the stock require for a missing module", function()
      local r = run("-e", "require 'no.such.module'")
      assert.equal(1, r.code)
      assert.matches("^coil: [^\n]*module 'no%.such%.module' not found:", r.stderr)
    end)
  end)

  describe("luv", function()
    it("an error in a raw callback is reported and ends the run with 1", function()
      local r = run(fixture "cli_luv_error")
      assert.equal(1, r.code)
      assert.matches("^coil: error in a luv callback: [^\n]*callback failed\n", r.stderr)
      assert.matches("stack traceback", r.stderr)
      assert.equal("cleanup after callback error\n", r.stdout)
    end)
  end)

  describe("errors nobody saw", function()
    it("are reported once, with the task's name and traceback", function()
      local r = run(fixture "cli_unseen")
      assert.equal(0, r.code)
      local _, count = r.stderr:gsub("failed and nobody awaited it", "")
      assert.equal(1, count)
      assert.matches("^coil: task 'lonely' failed and nobody awaited it: [^\n]*nobody looks at me\n", r.stderr)
      assert.matches("stack traceback of task 'lonely'", r.stderr)
      assert.not_matches("never reported", r.stderr)
      assert_coil_messages(r.stderr)
    end)

    it("a task that swallows its cancellation is warned about", function()
      local r = run(fixture "cli_swallow")
      assert.equal(0, r.code)
      assert.matches("^coil: task 'swallower' swallowed its cancellation", r.stderr)
    end)
  end)
end)
