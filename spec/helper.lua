--- Loaded before every spec file (see .busted). Every spec proves it left
-- nothing behind: after each test no task but the main one is alive and no
-- libuv handle the test opened is still open. A leak fails the test with the
-- leaked things named, and is cleaned up so the next test starts clean.
local coil = require "coil"
local coil_core = require "coil.core"
local busted = require "busted"

local function leftovers()
  local problems = {}
  local me = coil.current()
  for _, task in ipairs(coil.tasks()) do
    if task ~= me then
      problems[#problems + 1] = "task '" .. task:name() .. "' still alive"
      task:cancel("leaked by a test")
    end
  end
  for _, handle in ipairs(coil_core.open_handles()) do
    problems[#problems + 1] = tostring(handle) .. " still open"
    handle:close()
  end
  -- let cancelled tasks run their cleanup and closed handles finish
  for _ = 1, 10 do
    if #coil.tasks() <= 1 then break end
    coil.sleep(0.01)
  end
  return problems
end

-- Raising from a "test end" subscriber fails the test as an error.
busted.subscribe({ "test", "end" }, function()
  if coil.current() == nil then return nil, true end
  local problems = leftovers()
  if #problems > 0 then
    error("the test left things behind: " .. table.concat(problems, "; "), 0)
  end
  return nil, true
end)

-- COIL_BIN: the coil binary the CLI specs start (set by the test runner).
_G.COIL_BIN = os.getenv("COIL_BIN") or "build/coil"
