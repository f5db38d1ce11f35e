--- Keeps account of every libuv handle the script opens through luv, so the
-- shutdown can close the ones it forgot (SPEC §3 step 6) and `uv.walk` never
-- meets coil's own handles (which are not luv's and would crash it).
local core = require "coil.core"
local uv = require "luv"

local pcall, pairs, setmetatable, type, error = pcall, pairs, setmetatable, type, error
local getinfo = debug.getinfo

-- handle -> true, or the "file:line" that opened it while sites are recorded
local handles = setmetatable({}, { __mode = "k" })
local record_sites = false

-- The first frame outside coil's own files: where the script opened it.
local function caller_site()
  for level = 3, 40 do
    local info = getinfo(level, "Sl")
    if not info then break end
    if info.what ~= "C" and not info.source:match "^@coil/" then
      return info.short_src .. ":" .. (info.currentline or 0)
    end
  end
  return true
end

local function track(handle)
  handles[handle] = record_sites and caller_site() or true
end

local function tracked(constructor)
  return function(...)
    local handle, a, b = constructor(...)
    if handle then track(handle) end
    return handle, a, b
  end
end

for name, fn in pairs(uv) do
  if type(fn) == "function" and name:match "^new_" and name ~= "new_thread"
      and name ~= "new_work" then
    uv[name] = tracked(fn)
  end
end
-- A child is reaped only while its process handle is open: one that
-- closing must kill is closed from its exit callback, once libuv reaped it,
-- so no zombie is left behind.
local exited = setmetatable({}, { __mode = "k" })
local close_on_exit = setmetatable({}, { __mode = "k" })
local uv_spawn = uv.spawn
function uv.spawn(path, options, on_exit)
  local handle
  local function exit_cb(...)
    exited[handle] = true
    if on_exit then on_exit(...) end
    if close_on_exit[handle] and not handle:is_closing() then handle:close() end
  end
  local pid
  handle, pid = uv_spawn(path, options, exit_cb)
  if handle then track(handle) end
  return handle, pid
end

local function is_open(handle)
  local ok, closing = pcall(handle.is_closing, handle)
  return ok and not closing
end

--- uv.walk over the handles the script opened (luv's own walk would also
-- meet coil's internal handles).
function uv.walk(callback)
  if type(callback) ~= "function" then -- luv's own message for it
    error(("bad argument #1 to 'luv.walk' (function expected, got %s)"):format(
      callback == nil and "no value" or type(callback)), 2)
  end
  local list = {}
  for handle in pairs(handles) do
    if is_open(handle) then list[#list + 1] = handle end
  end
  for i = 1, #list do callback(list[i]) end
end

--- Closes every handle still open; called by the shutdown (step 6) and at
-- the natural end of the run.
function core.hooks.close_handles()
  for handle in pairs(handles) do
    if is_open(handle) then
      if handle.kill and handle.get_pid and not exited[handle] then
        -- a child process: never leave an orphan, nor a zombie, behind
        close_on_exit[handle] = true
        pcall(handle.kill, handle, "sigkill")
      else
        pcall(handle.close, handle)
      end
    end
  end
end

--- Whether a handle the script opened is active and referenced: what keeps
-- a runtime on a host's loop from being deadlocked (the host's own handles
-- do not count).
local last_busy -- the handle found busy last time: uv.run asks every turn
function core.hooks.busy()
  local handle = last_busy
  if handle then
    local ok, active = pcall(handle.is_active, handle)
    if ok and active and handle:has_ref() then return true end
    last_busy = nil
  end
  for h in pairs(handles) do
    local ok, active = pcall(h.is_active, h)
    if ok and active and h:has_ref() then
      last_busy = h
      return true
    end
  end
  return false
end

--- core.record_sites(on): from now on, remember where each handle is
-- opened (for the test helper's messages; off by default, it costs a stack
-- walk per handle).
function core.record_sites(on) record_sites = on and true or false end

--- core.handle_site(handle) -> "file:line" that opened it, or nil.
function core.handle_site(handle)
  local site = handles[handle]
  if site ~= true then return site end
end

--- core.untrack(handle): coil's own helpers' handles are not the script's.
function core.untrack(handle) handles[handle] = nil end

--- Open handles, for the test helpers: a list of handles.
function core.open_handles()
  local list = {}
  for handle in pairs(handles) do
    if is_open(handle) then list[#list + 1] = handle end
  end
  return list
end

return handles
