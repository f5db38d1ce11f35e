--- coil: the module scripts require.
-- The C core (already in package.loaded.coil) runs tasks, sleeping, cancellation and the
-- shutdown sequence; the files beside this one add the Lua half. Inside the
-- `coil` host the module also takes over `require` (so a module may await
-- while it loads) and `os.exit` (graceful: cleanup runs first).
local core = package.loaded.coil
local uv = require "luv"

local coil = core
coil.uv = uv
coil.version = "0.1.0"

require "coil.handles"
require "coil.uvloop"
require "coil.uvsignal"
require "coil.sync"
require "coil.combinators"
require "coil.shutdown"

if core._host then
  _G.require = require "coil.require"
  os.exit = core._exit
end

-- Awaitable I/O (docs/io.md): coil.await now, coil.fs / coil.net /
-- coil.process loaded on first use.
coil.await = require "coil.await"
do
  local lazy = { fs = "coil.fs", net = "coil.net", process = "coil.process",
                 io = "coil.io", thread = "coil.thread",
                 service = "coil.service" }
  local mt = getmetatable(coil) or {}
  local index = mt.__index
  mt.__index = function(t, key)
    local name = lazy[key]
    if name then
      local module = package.loaded[name] or require(name)
      rawset(t, key, module)
      return module
    end
    if type(index) == "function" then return index(t, key) end
    if index then return index[key] end
  end
  setmetatable(coil, mt)
end

-- Under a service manager, coil.service hooks the shutdown's first step.
if os.getenv "NOTIFY_SOCKET" then require "coil.service" end

return coil
