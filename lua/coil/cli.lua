--- The main task of the `coil` command: runs the -e chunks and -l modules in
-- the order given, then the script, all in this one task (lua.c's order).
-- argv is the command line (argv[0] = "coil"), script the index of the
-- script in it (nil when there is none), actions a list of {"e", chunk} /
-- {"l", name}.
local core = require "coil"

local load, loadfile, ipairs, unpack = load, loadfile, ipairs, table.unpack

--- A load error is one plain line and status 1, never a traceback.
local function failed(message)
  core._report(message)
  return 1
end

return function(argv, script, actions)
  local arg, base = {}, script or 0
  for i = 0, #argv do arg[i - base] = argv[i] end
  _G.arg = arg

  for _, action in ipairs(actions) do
    if action[1] == "e" then
      local chunk, err = load(action[2], "=(command line)")
      if not chunk then return failed(err) end
      chunk()
    else
      local global, name = action[2]:match "^([^=]+)=(.+)$"
      global = global or action[2]
      name = name or action[2]
      _G[global] = require(name)
    end
  end

  if script then
    local path = argv[script]
    local chunk, err = loadfile(path ~= "-" and path or nil)
    if not chunk then return failed(err) end
    return chunk(unpack(arg, 1, #argv - script))
  end
end
