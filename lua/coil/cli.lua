--- The main task of the `coil` command, in lua.c's order: the `arg` table,
-- LUA_INIT_5_4 or LUA_INIT (unless -E), the -e chunks, -l modules and -W in
-- the order given, then the script, all in this one task.
-- argv is the command line (argv[0] = "coil"), script the index of the
-- script in it (0: standard input, with no script named; nil: none), actions a list of {"e", chunk} /
-- {"l", "name" or "g=name"} / {"W"}, ignore_env true under -E.
local core = require "coil.core"

local load, loadfile, ipairs, unpack, getenv, warn, type =
  load, loadfile, ipairs, table.unpack, os.getenv, warn, type

--- A load error is one plain line and status 1, never a traceback.
local function failed(message)
  core.report(message)
  return 1
end

--- LUA_INIT_5_4, else LUA_INIT: a chunk, or "@file" to run a file.
-- Returns nil, or the status of a failed load.
local function lua_init()
  local name, init = "LUA_INIT_5_4", getenv "LUA_INIT_5_4"
  if init == nil then name, init = "LUA_INIT", getenv "LUA_INIT" end
  if init == nil then return end
  local chunk, err
  if init:sub(1, 1) == "@" then chunk, err = loadfile(init:sub(2))
  else chunk, err = load(init, "=" .. name) end
  if not chunk then return failed(err) end
  chunk()
end

return function(argv, script, actions, ignore_env)
  local arg, base = {}, script or 0
  for i = 0, #argv do arg[i - base] = argv[i] end
  _G.arg = arg

  if not ignore_env then
    local status = lua_init()
    if status then return status end
  end

  for _, action in ipairs(actions) do
    local what = action[1]
    if what == "e" then
      local chunk, err = load(action[2], "=(command line)")
      if not chunk then return failed(err) end
      chunk()
    elseif what == "l" then
      local global, name = action[2]:match "^([^=]*)=(.*)$"
      global = global or action[2]
      name = name or action[2]
      _G[global] = require(name)
    else -- "W"
      warn "@on"
    end
  end

  if script == 0 then
    -- no script on the command line: standard input, without arguments
    local chunk, err = loadfile(nil)
    if not chunk then return failed(err) end
    return chunk()
  elseif script then
    local path = argv[script]
    -- "-" is standard input, unless it comes after "--" (a file named "-")
    if path == "-" and argv[script - 1] ~= "--" then path = nil end
    local chunk, err = loadfile(path)
    if not chunk then return failed(err) end
    -- the script gets the `arg` table as it is now (-e may have changed it)
    local args = _G.arg
    if type(args) ~= "table" then return failed "'arg' is not a table" end
    return chunk(unpack(args, 1, #args))
  end
end
