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
require "coil.sync"
require "coil.shutdown"

if core._host then
  _G.require = require "coil.require"
  os.exit = core._exit
end

return coil
