-- docs/api.lua, the one description of the Lua API: regenerating the types
-- and the docs' API tables from it changes nothing, the definitions load as
-- Lua, and it describes every public member the running coil has, and
-- nothing coil does not have.
local proc = require "spec.support.proc"
local coil = require "coil"
local uv = require "luv"

local ROOT = uv.cwd()

local function gen(option)
  return proc.start("lua5.4", { ROOT .. "/scripts/gen-api", option }):wait(60)
end

-- class -> { name -> kind }
local function described()
  local r = gen "--list"
  assert.equal(0, r.code, r.stderr)
  local d = {}
  for class, kind, name in r.stdout:gmatch "([^\t\n]+)\t([^\t\n]+)\t([^\t\n]+)\n" do
    d[class] = d[class] or {}
    d[class][name] = kind
  end
  return d
end

local PARENT = { ["coil.Lock"] = "coil.Semaphore" }
-- only in the module stock lua5.4 loads (checked below with lua5.4)
local MODULE_ONLY = { ["coil.run"] = true }

local function public_keys(t)
  local keys = {}
  for k in pairs(t) do
    if type(k) == "string" and not k:match "^_" then keys[#keys + 1] = k end
  end
  table.sort(keys)
  return keys
end

describe("docs/api.lua", function()
  it("regenerates types/ and the docs' API tables unchanged", function()
    local r = gen "--check"
    assert.equal(0, r.code, r.stderr)
  end)

  it("--check names what a hand edit or a new description would change", function()
    local dir = assert(uv.fs_mkdtemp("/tmp/coil-genapi-XXXXXX"))
    local r = proc.start("sh", { "-c", [[
      set -e
      mkdir -p "$2/scripts" && cp -r "$1/docs" "$1/types" "$2/" && cp "$1/scripts/gen-api" "$2/scripts/"
      sed -i 's/the live tasks, oldest first/the live tasks, by hand/' "$2/docs/tasks.md"
      sed -i 's/suspend for `s` seconds/sleep for `s` seconds/' "$2/docs/api.lua"
      s=0; lua5.4 "$2/scripts/gen-api" --check 2>"$2/err" || s=$?
      cat "$2/err"; echo "status $s"
      lua5.4 "$2/scripts/gen-api" >/dev/null && lua5.4 "$2/scripts/gen-api" --check && echo "fixed"
      grep -c "sleep for" "$2/docs/tasks.md" "$2/types/library/coil.lua"
      rm -rf "$2"]], "sh", ROOT, dir }):wait(60)
    assert.equal(0, r.code, r.stderr)
    assert.matches("docs/tasks.md", r.stdout)
    assert.matches("types/library/coil.lua", r.stdout)
    assert.matches("status 1\n", r.stdout)
    assert.matches("fixed\n", r.stdout)
    assert.matches("tasks.md:1\n.*coil.lua:1\n", r.stdout)
    assert.not_matches("by hand", r.stdout)
  end)

  it("gives definitions that load as Lua, with LuaLS's config", function()
    local r = proc.start("sh", { "-c", 'cd "$1" && find types/library -name "*.lua"', "sh", ROOT }):wait(10)
    local n = 0
    for path in r.stdout:gmatch "[^\n]+" do
      assert(loadfile(ROOT .. "/" .. path))
      n = n + 1
    end
    assert.is_true(n >= 6, "expected a definitions file per module")
    local f = assert(io.open(ROOT .. "/types/config.json"))
    local config = f:read "a"
    f:close()
    assert.matches('"Lua.runtime.version": "Lua 5.4"', config, 1, true)
    assert.matches("coil", config)
  end)

  it("describes coil.run, which the module for stock lua5.4 has", function()
    assert.equal("function", described().coil.run)
    if os.getenv "COIL_SANITIZED" then return end -- coil.so needs the sanitizers' runtime
    local build = (COIL_BIN:sub(1, 1) == "/" and COIL_BIN or ROOT .. "/" .. COIL_BIN):match "^(.*)/"
    local r = proc.start("lua5.4", { "-e", 'package.cpath = "' .. build .. '/?.so;" .. package.cpath',
                                     "-e", 'io.write(type(require "coil".run))' }):wait(30)
    assert.equal(0, r.code, r.stderr)
    assert.equal("function", r.stdout)
  end)

  it("describes every member of the module, its submodules and its objects, and no other", function()
    local d = described()
    local dir = assert(uv.fs_mkdtemp("/tmp/coil-types-XXXXXX"))
    local server = assert(coil.net.listen("127.0.0.1", 0, function(s) s:read() end))
    local _, port = server:address()
    local stream = assert(coil.net.connect("127.0.0.1", port))
    local file = assert(coil.fs.open(dir .. "/f", "w"))
    local child = assert(coil.process.spawn("true"))
    local later = coil.call_later(60, function() end)
    local hook = coil.on_shutdown(function() end)
    local sig = coil.on_signal("SIGUSR2", function() end)
    local udp = assert(coil.net.udp("127.0.0.1", 0))
    local watcher = assert(coil.fs.watch(dir))
    local group = coil.group(function(g) return g end)
    local objects = {
      coil = coil, ["coil.fs"] = coil.fs, ["coil.net"] = coil.net,
      ["coil.process"] = coil.process, ["coil.io"] = coil.io,
      ["coil.busted"] = require "coil.busted",
      ["coil.Task"] = coil.spawn(function() end),
      ["coil.Event"] = coil.event(), ["coil.Queue"] = coil.queue(),
      ["coil.Semaphore"] = coil.semaphore(1), ["coil.Lock"] = coil.lock(),
      ["coil.File"] = file, ["coil.Server"] = server, ["coil.Stream"] = stream,
      ["coil.Process"] = child, ["coil.Later"] = later, ["coil.Hook"] = hook,
      ["coil.SignalHandle"] = sig, ["coil.Udp"] = udp, ["coil.Watcher"] = watcher,
      ["coil.Group"] = group, ["coil.service"] = coil.service,
      ["coil.console"] = require "coil.console",
    }
    local undescribed, missing = {}, {}
    for class, object in pairs(objects) do
      -- what the object has: its own keys (a module), or its class's methods
      local mt = getmetatable(object)
      local methods = type(mt) == "table" and type(mt.__index) == "table" and mt.__index
      local keys = public_keys(methods or object)
      if class == "coil" then keys = public_keys(object) end
      for _, k in ipairs(keys) do
        local c, found = class, false
        while c and not found do
          found = d[c] and d[c][k] ~= nil
          c = PARENT[c]
        end
        if not found then undescribed[#undescribed + 1] = class .. "." .. k end
      end
      for name, kind in pairs(d[class] or {}) do
        if kind == "function" and object[name] == nil and not MODULE_ONLY[class .. "." .. name] then
          missing[#missing + 1] = class .. "." .. name
        end
      end
    end
    udp:close()
    watcher:close()
    later:cancel()
    hook:remove()
    sig:close()
    child:wait()
    file:close()
    stream:close()
    server:close()
    coil.fs.remove(dir .. "/f")
    coil.fs.remove(dir)
    table.sort(undescribed)
    table.sort(missing)
    assert.same({}, undescribed, "public members that docs/api.lua does not describe " ..
                 "(add them, then run scripts/gen-api)")
    assert.same({}, missing, "members docs/api.lua describes that coil does not have")
  end)
end)
