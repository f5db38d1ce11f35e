--- retry: call a function until it succeeds, waiting longer after each
-- failure (exponential backoff). A small async library, tested with
-- coil.busted in retry_spec.lua beside it (see README.md).
--
--     local retry = require "retry"
--     local body = retry.call(function() return fetch(url) end,
--                             { attempts = 4, delay = 0.2 })
local coil = require "coil"

local error, pcall, type = error, pcall, type
local min, random = math.min, math.random
local pack, unpack = table.pack, table.unpack

local M = {}

local defaults = { attempts = 5, delay = 0.1, factor = 2, max_delay = 5,
                   jitter = 0 }

local function option(opts, name)
  local value = opts[name]
  if value == nil then return defaults[name] end
  if type(value) ~= "number" or value < 0 then
    error(("retry: %s must be a non-negative number"):format(name), 3)
  end
  return value
end

--- Calls `fn()` until it returns without raising.
-- @tparam function fn the work; it may await
-- @tparam[opt] table opts `attempts` (5), `delay` before the second try in
-- seconds (0.1), `factor` the delay grows by (2), `max_delay` (5),
-- `jitter` (0: a fraction of each delay taken off at random),
-- `retry_if(err)` → whether an error is worth another try (default: all),
-- `on_retry(err, attempt, delay)` called before each wait
-- @return fn's results
-- @raise fn's last error once the attempts are used up, or at once an error
-- `retry_if` refuses. A cancellation is never retried: cancelling the
-- calling task stops it at once, in `fn` or in the wait.
function M.call(fn, opts)
  if type(fn) ~= "function" then
    error("retry: a function expected, got " .. type(fn), 2)
  end
  opts = opts or {}
  local attempts = option(opts, "attempts")
  local delay = option(opts, "delay")
  local factor = option(opts, "factor")
  local max_delay = option(opts, "max_delay")
  local jitter = option(opts, "jitter")
  local retry_if, on_retry = opts.retry_if, opts.on_retry
  if attempts < 1 or attempts % 1 ~= 0 then
    error("retry: attempts must be a whole number, at least 1", 2)
  end

  for attempt = 1, attempts do
    local r = pack(pcall(fn))
    if r[1] then return unpack(r, 2, r.n) end
    local err = r[2]
    if coil.is_cancelled(err) or attempt == attempts
        or (retry_if and not retry_if(err)) then
      error(err, 0)
    end
    local wait = min(delay, max_delay) * (1 - jitter * random())
    if on_retry then on_retry(err, attempt, wait) end
    coil.sleep(wait)
    delay = delay * factor
  end
end

return M
