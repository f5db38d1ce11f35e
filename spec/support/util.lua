--- Small helpers the async specs share.
local coil = require "coil"

local M = {}

--- Lets the loop turn n times (1 by default): other ready tasks run.
function M.turns(n)
  for _ = 1, n or 1 do coil.sleep(0) end
end

--- Runs fn and returns the error it raises (fails if it does not raise).
function M.error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error")
  return err
end

return M
