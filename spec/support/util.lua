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

--- Runs check(seed) for each seed of a property test, with math.random
-- seeded by it: COIL_SEED=s runs that one seed, COIL_PROP_RUNS=k sets how
-- many (default `runs`). A failure cancels what the seed left running,
-- lets it clean up, and is raised naming its seed.
function M.for_seeds(check, runs)
  local fixed = tonumber(os.getenv "COIL_SEED")
  local base = fixed or (os.time() % 100000) * 1000
  runs = fixed and 1 or tonumber(os.getenv "COIL_PROP_RUNS") or runs
  for i = 0, runs - 1 do
    local seed = base + i
    math.randomseed(seed)
    local ok, err = pcall(check, seed)
    if not ok then
      for _, t in ipairs(coil.tasks()) do
        if t ~= coil.current() then t:cancel() end
      end
      M.turns(5)
      error(("seed %d: %s (replay with COIL_SEED=%d)"):format(seed, tostring(err), seed), 0)
    end
  end
end

--- A TCP port on 127.0.0.1 that was free a moment ago.
function M.free_port()
  local tcp = require("luv").new_tcp()
  assert(tcp:bind("127.0.0.1", 0))
  local port = tcp:getsockname().port
  tcp:close()
  return port
end

--- ⏳ Sends one line to 127.0.0.1:port and returns the line that comes
-- back, or nil, err.
function M.ask(port, text)
  local stream, err = coil.net.connect("127.0.0.1", port)
  if not stream then return nil, err end
  local ok, e = stream:write(text .. "\n")
  local line
  if ok then line, e = stream:read_line() end
  stream:close()
  return line, e
end

return M
