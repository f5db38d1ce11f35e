--- coil.fs: files and directories through libuv's threadpool, as awaiting
-- calls. Failures return `nil, err` with luv's message ("ENOENT: no such
-- file or directory: /x"); wrong arguments raise. A file opened with
-- fs.open belongs to the task that opened it and is closed when that task
-- ends, if it was not closed before.
local core = require "coil.core"
local in_task = core.in_task
local uv = require "luv"
require "coil.await"

local await, current, defer = core.await_request, core.current, core.defer
local type, error, tostring, pcall = type, error, tostring, pcall
local setmetatable, getmetatable, pairs = setmetatable, getmetatable, pairs
local concat, sort = table.concat, table.sort
local math_type = math.type

local M = {}

local CHUNK = 64 * 1024
-- The most one file:read asks libuv for: luv passes the size as 32 bits (so
-- 2^32 read nothing) and allocates it whole (so math.maxinteger failed).
local MAX_READ = 16 * 1024 * 1024

local function need_task(what)
  in_task("fs." .. what, 3)
end

local function check_string(value, what, name)
  if type(value) ~= "string" then
    error(("coil: fs.%s: %s must be a string, got %s"):format(what, name, type(value)), 3)
  end
end

local function check_mode(value, what, default)
  if value == nil then return default end
  if math_type(value) ~= "integer" or value < 0 then
    error(("coil: fs.%s: mode must be a non-negative integer, got %s")
          :format(what, tostring(value)), 3)
  end
  return value
end

-- Files -----------------------------------------------------------------

local File = { __name = "coil.file" }
File.__index = File

function File:__tostring()
  return ("coil.file (%s%s)"):format(self.path, self.fd and "" or ", closed")
end

-- Files each task still has open: task -> set of files, closed by one
-- defer per task (so a task that opens many files keeps one defer).
local owned = setmetatable({}, { __mode = "k" })

local function close_all(set)
  for file in pairs(set) do file:close() end
end

local function own(file)
  local me = current()
  local set = owned[me]
  if not set then
    set = {}
    owned[me] = set
    defer(close_all, set)
  end
  set[file] = true
  file.owner = set
end

-- The fd is closed once no request uses it any more: closing it under a
-- read still running in the threadpool could let that read hit another
-- file that reused the number.
local function release(self)
  if self.closed and self.busy == 0 and self.fd then
    local fd = self.fd
    self.fd = nil
    uv.fs_close(fd)
  end
end

local function done_request(self)
  self.busy = self.busy - 1
  release(self)
end

-- Runs one fs request on this file; the fd stays open until its callback.
local function request(self, fn, ...)
  self.busy = self.busy + 1
  local late = function() done_request(self) end
  local err, result = await(late, nil, fn, self.fd, ...)
  done_request(self)
  return err, result
end

local function check_file(self, what)
  if getmetatable(self) ~= File then
    error("coil: file:" .. what .. " expects a file (use file:" .. what .. "(...))", 3)
  end
  if self.closed then error("coil: file:" .. what .. " on a closed file", 3) end
  in_task("file:" .. what, 3)
end

--- ⏳ Reads up to `n` bytes (default 65536; at most 16 MiB per call) from
-- the file's position.
-- @return a string; nil at the end of the file; nil, err on failure
-- @raise on a closed file or a bad size
function File:read(n)
  check_file(self, "read")
  if n == nil then n = CHUNK
  elseif math_type(n) ~= "integer" or n < 0 then
    error("coil: file:read: size must be a non-negative integer, got " .. tostring(n), 2)
  end
  if n == 0 then return "" end
  if n > MAX_READ then n = MAX_READ end
  local err, data = request(self, uv.fs_read, n, -1)
  if err then return nil, err end
  if data == "" then return nil end
  return data
end

--- ⏳ Writes all of `data` at the file's position (the end, in "a" mode).
-- @return true; nil, err on failure
function File:write(data)
  check_file(self, "write")
  if type(data) ~= "string" then
    error("coil: file:write: data must be a string, got " .. type(data), 2)
  end
  while #data > 0 do
    local err, written = request(self, uv.fs_write, data, -1)
    if err then return nil, err end
    if written >= #data then break end
    data = data:sub(written + 1)
  end
  return true
end

local SEEK = { set = true, cur = true, ["end"] = true }

--- file:seek([whence [, offset]]) -> the new position, as Lua's file:seek:
-- whence "set" (from the start), "cur" (from the position; the default) or
-- "end", offset in bytes (default 0). `file:seek()` tells the position,
-- `file:seek("end")` the size. Not ⏳: a seek never blocks.
-- @return the position from the start of the file; nil, err on failure
-- ("EINVAL: invalid argument" before the start)
-- @raise on a bad whence or offset, or a closed file
function File:seek(whence, offset)
  if getmetatable(self) ~= File then
    error("coil: file:seek expects a file (use file:seek(...))", 2)
  end
  if self.closed then error("coil: file:seek on a closed file", 2) end
  whence = whence or "cur"
  if not SEEK[whence] then
    error('coil: file:seek: whence must be "set", "cur" or "end", got ' .. tostring(whence), 2)
  end
  if offset == nil then offset = 0
  elseif math_type(offset) ~= "integer" then
    error("coil: file:seek: offset must be an integer, got " .. tostring(offset), 2)
  end
  return core.lseek(self.fd, offset, whence)
end

--- Closes the file (at once; the fd itself once no request uses it). A
-- second close does nothing.
function File:close()
  if getmetatable(self) ~= File then
    error("coil: file:close expects a file (use file:close())", 2)
  end
  if self.closed then return true end
  self.closed = true
  if self.owner then
    self.owner[self] = nil
    self.owner = nil
  end
  release(self)
  return true
end
File.__close = File.close

local OPEN_FLAGS = {
  r = true, ["r+"] = true, w = true, ["w+"] = true, a = true, ["a+"] = true,
  wx = true, ["wx+"] = true, ax = true, ["ax+"] = true,
}

local function open(path, mode, perm, what)
  need_task(what)
  check_string(path, what, "path")
  mode = mode or "r"
  if type(mode) ~= "string" or not OPEN_FLAGS[mode:gsub("b", "")] then
    error(("coil: fs.%s: invalid mode %s (r, w, a, r+, w+, a+, wx, ax)")
          :format(what, tostring(mode)), 3)
  end
  perm = check_mode(perm, what, 438) -- 0666
  local late = function(_, fd) if fd then uv.fs_close(fd) end end
  local err, fd = await(late, nil, uv.fs_open, path, (mode:gsub("b", "")), perm)
  if err then return nil, err end
  local file = setmetatable({ path = path, fd = fd, busy = 0, closed = false }, File)
  own(file)
  return file
end

--- fs.open(path [, mode [, perm]]) ⏳ -> file
-- mode as io.open ("r" by default; "b" is ignored), perm for a new file
-- (default 0666, less the umask). The file is closed when the task that
-- opened it ends, or by file:close() / a `<close>` variable before that.
-- @return a file with read, write, close; nil, err on failure
function M.open(path, mode, perm)
  return open(path, mode, perm, "open")
end

--- fs.read_file(path) ⏳ -> the whole content as a string, or nil, err.
function M.read_file(path)
  local file <close>, err = open(path, "r", nil, "read_file")
  if not file then return nil, err end
  local parts, n = {}, 0
  while true do
    local data, e = file:read(CHUNK * 16)
    if e then return nil, e end
    if not data then break end
    n = n + 1
    parts[n] = data
  end
  return concat(parts)
end

--- fs.write_file(path, data) ⏳ -> true, or nil, err. Creates or truncates.
function M.write_file(path, data)
  need_task("write_file")
  check_string(path, "write_file", "path")
  check_string(data, "write_file", "data")
  local file <close>, err = open(path, "w", nil, "write_file")
  if not file then return nil, err end
  return file:write(data)
end

--- fs.stat(path) ⏳ -> luv's stat table (type, size, mode, mtime…), or nil, err.
function M.stat(path)
  need_task("stat")
  check_string(path, "stat", "path")
  local err, st = await(nil, nil, uv.fs_stat, path)
  if err then return nil, err end
  return st
end

--- fs.mkdir(path [, mode]) ⏳ -> true, or nil, err (mode default 0777).
function M.mkdir(path, mode)
  need_task("mkdir")
  check_string(path, "mkdir", "path")
  mode = check_mode(mode, "mkdir", 511)
  local err = await(nil, nil, uv.fs_mkdir, path, mode)
  if err then return nil, err end
  return true
end

--- fs.remove(path) ⏳ -> true, or nil, err: a file, a link or an empty
-- directory, as os.remove.
function M.remove(path)
  need_task("remove")
  check_string(path, "remove", "path")
  local err, st = await(nil, nil, uv.fs_lstat, path)
  if err then return nil, err end
  local fn = st.type == "directory" and uv.fs_rmdir or uv.fs_unlink
  err = await(nil, nil, fn, path)
  if err then return nil, err end
  return true
end

--- fs.rename(from, to) ⏳ -> true, or nil, err.
function M.rename(from, to)
  need_task("rename")
  check_string(from, "rename", "from")
  check_string(to, "rename", "to")
  local err = await(nil, nil, uv.fs_rename, from, to)
  if err then return nil, err end
  return true
end

--- fs.readdir(path) ⏳ -> names, types, or nil, err. `names` is the sorted
-- list of entries ("." and ".." left out); `types` maps each name to
-- "file", "directory", "link", … as libuv reports it.
function M.readdir(path)
  need_task("readdir")
  check_string(path, "readdir", "path")
  local err, req = await(nil, nil, uv.fs_scandir, path)
  if err then return nil, err end
  local names, types = {}, {}
  while true do
    local name, kind = uv.fs_scandir_next(req)
    if not name then
      if kind then return nil, kind end -- an error while iterating
      break
    end
    names[#names + 1] = name
    types[name] = kind
  end
  sort(names)
  return names, types
end

-- Watchers ------------------------------------------------------------------

local Watcher = { __name = "coil.watcher" }
Watcher.__index = Watcher

function Watcher:__tostring()
  return ("coil.watcher (%s%s)"):format(self.path, self.closed and ", closed" or "")
end

local ECANCELED = core.uv_error "ECANCELED"

-- Events pile up until a task takes them: one "change" stands for many.
local function on_event(self, err, name, events)
  if err then
    self.err = self.err or core.uv_error(err)
  else
    if events.change and not self.pending.change then
      self.pending.change = true
      self.order[#self.order + 1] = "change"
    end
    if events.rename and not self.pending.rename then
      self.pending.rename = true
      self.order[#self.order + 1] = "rename"
    end
    self.name = name
  end
  local waiter = self.waiter
  if waiter then
    self.waiter = nil
    core.wake(waiter)
  end
end

--- fs.watch(path) -> watcher, or nil, err: watches a file or a directory
-- (libuv's fs events: inotify). The watcher keeps the process alive until
-- watcher:close() or the shutdown.
function M.watch(path)
  check_string(path, "watch", "path")
  local handle = uv.new_fs_event()
  local self = setmetatable({ path = path, handle = handle, closed = false,
                              pending = {}, order = {}, name = nil, waiter = nil }, Watcher)
  local ok, err = handle:start(path, {}, function(e, name, events)
    on_event(self, e, name, events)
  end)
  if not ok then
    handle:close()
    return nil, err
  end
  return self
end

local function check_watcher(self, what)
  if getmetatable(self) ~= Watcher then
    error("coil: watcher:" .. what .. " expects a watcher (use watcher:" .. what .. "())", 3)
  end
end

--- watcher:wait() ⏳ -> events, name: the list of what happened since the
-- last wait ("change", "rename", each once, in the order first seen) and
-- the name of the file it concerns (for a directory, the entry's name).
-- @return events, name; nil, err on failure; nil, "ECANCELED: …" once
-- the watcher is closed
-- @raise when another task waits on it already, or outside a task
function Watcher:wait()
  check_watcher(self, "wait")
  local me = in_task("watcher:wait", 2)
  while #self.order == 0 do
    if self.err then return nil, self.err end
    if self.closed then return nil, ECANCELED end
    if self.waiter then
      error("coil: watcher:wait: another task is already waiting on this watcher", 2)
    end
    self.waiter = me
    local ok, err = pcall(core.park)
    if self.waiter == me then self.waiter = nil end
    if not ok then error(err, 0) end
  end
  local events, name = self.order, self.name
  self.order, self.pending, self.name = {}, {}, nil
  return events, name
end

--- watcher:close(): stops watching; a task in wait() gets nil,
-- "ECANCELED: operation canceled". Twice does nothing.
function Watcher:close()
  check_watcher(self, "close")
  if self.closed then return true end
  self.closed = true
  if not self.handle:is_closing() then self.handle:close() end
  local waiter = self.waiter
  if waiter then
    self.waiter = nil
    core.wake(waiter)
  end
  return true
end
Watcher.__close = Watcher.close

return M
