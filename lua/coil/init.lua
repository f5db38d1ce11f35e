--- coil: the module scripts require.
-- The C core and the files beside this one fill the private table
-- `require "coil.core"` (tasks, sleeping, cancellation, the shutdown
-- sequence, and the internals the Lua half shares). This file is the one
-- place the public `coil` table is assembled, from the explicit list below:
-- nothing else puts a name on it, and no internal is on it. Inside the
-- `coil` host the module also takes over `require` (so a module may await
-- while it loads) and `os.exit` (graceful: cleanup runs first).
local core = require "coil.core"
local uv = require "luv"

require "coil.handles"
require "coil.uvloop"
require "coil.uvsignal"
require "coil.sync"
require "coil.combinators"
require "coil.shutdown"
local await = require "coil.await"

local PUBLIC = {
  -- tasks (src/spawn.c, src/task.c)
  "spawn", "current", "tasks", "shield", "defer",
  -- errors (src/error.c)
  "Cancelled", "Timeout", "Interrupted", "is_cancelled", "is_timeout",
  "is_interrupted", "on_error",
  -- time (src/timer.c)
  "sleep", "now",
  -- combinators and groups (combinators.lua, group.lua)
  "gather", "wait", "race", "timeout", "call_later", "move_on_after",
  "group",
  -- I/O (await.lua)
  "await_at",
  -- synchronisation (sync.lua)
  "event", "queue", "semaphore", "lock",
  -- the shutdown and signals (src/shutdown.c, shutdown.lua)
  "shutdown", "stopping", "on_shutdown", "on_signal", "dump",
}

local coil = { uv = uv, version = "0.2.0", await = await }
for _, name in ipairs(PUBLIC) do
  coil[name] = core[name] or error("coil.init: nothing provides coil." .. name)
end

if core.host then
  _G.require = require "coil.require"
  os.exit = core.exit
end

-- Modules loaded on first use (docs/io.md).
local lazy = { fs = "coil.fs", net = "coil.net", process = "coil.process", io = "coil.io", thread = "coil.thread", service = "coil.service" }
setmetatable(coil, {
  __name = "coil",
  __index = function(t, key)
    local name = lazy[key]
    if not name then return nil end
    local module = require(name)
    rawset(t, key, module)
    return module
  end,
})

-- Under a service manager, coil.service hooks the shutdown's first step.
if os.getenv "NOTIFY_SOCKET" then require "coil.service" end

package.loaded.coil = coil
return coil
