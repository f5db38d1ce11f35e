--- The interactive console (SPEC §8, docs/console.md): the rules of the
-- stock `lua` console, with each statement run as a task that the console
-- awaits, and input read through the loop, so that background tasks go on
-- while it waits for a line.
--
-- On a terminal, lines are edited with libedit when the `coil` command was
-- built with it (the C module `coil.console_edit`, preloaded by the command
-- only); otherwise lines are read plainly from a luv stream (or file reads),
-- and, when standard input is not a terminal, echoed after their prompt as
-- `lua -i < file` does.
local core = require "coil.core"
local sync = require "coil.sync"
local uv = require "luv"

local load, tostring, type, pcall, xpcall, error, next, ipairs, select =
  load, tostring, type, pcall, xpcall, error, next, ipairs, select
local getmetatable, setmetatable, rawget = getmetatable, setmetatable, rawget
local pack, unpack = table.pack, table.unpack
local traceback, getuservalue, getregistry =
  debug.traceback, debug.getuservalue, debug.getregistry
local stdout, stderr = io.stdout, io.stderr

local M = {}

-- Writes that go through Lua's own functions (the console's prompts and
-- echoes), never through the wrappers installed for background output.
local file_methods = getmetatable(stdout).__index
local raw = { print = print, write = io.write, fwrite = file_methods.write }

-- The command's C helper (src/console_edit.c): line editing when built in,
-- and the switch of fd 0 between blocking and not. Absent when the console
-- runs in a host other than the coil command.
local helper = package.preload["coil.console_edit"] and require "coil.console_edit"
local function stdin_blocking(on)
  if helper then helper.stdin_blocking(on) end
end

local function out(s)
  raw.fwrite(stdout, s)
  stdout:flush()
end

-- Input ------------------------------------------------------------------

--- A line source reading fd 0 through the loop. `read(prompt)` ⏳ returns the
-- next line (no newline), nil at the end of input, or DISCARD after
-- `discard()` (Ctrl+C at the prompt); `showing` is true while a prompt waits
-- on screen; `above(fn, ...)` calls fn with the prompt out of the way.
local Reader = { __name = "coil.console_reader" }
Reader.__index = Reader

local DISCARD = setmetatable({}, { __name = "coil.console_discard" })

--- Hands a line (or false at the end, or DISCARD) to the waiting read; from
-- then on the prompt is no longer on screen for output to go above.
function Reader:deliver(line)
  self.showing = false
  self.lines:try_put(line)
end

--- Drops the line being typed: the waiting read returns DISCARD.
function Reader:discard() self:deliver(DISCARD) end

local function new_reader(kind)
  return setmetatable({ kind = kind, lines = sync.queue(), buffer = "",
                        eof = false, showing = false }, Reader)
end

-- Plain lines from a stream (a terminal in its normal mode, a pipe, a
-- socket) or a file.
local PlainReader = setmetatable({ __name = "coil.console_reader" },
                                 { __index = Reader })
PlainReader.__index = PlainReader

local function plain_reader(kind)
  local self = setmetatable(new_reader(kind), PlainReader)
  self.echo = kind ~= "tty"
  if kind == "tty" then
    self.stream = uv.new_tty(0, true)
  elseif kind == "pipe" or kind == "tcp" then
    local stream = kind == "pipe" and uv.new_pipe(false) or uv.new_tcp()
    if stream and stream:open(0) then
      self.stream = stream
    elseif stream then
      stream:close()
    end
  end
  if self.stream then
    core.untrack(self.stream)
  else
    self.kind = "file" -- no stream for it: plain reads from the thread pool
  end
  return self
end

-- Splits what came in into lines for the queue; true once one is there.
function PlainReader:take(data)
  if data == nil then
    if self.buffer ~= "" then self:deliver(self.buffer) end
    self.buffer = ""
    self.eof = true
    self:deliver(false)
    return true
  end
  local buffer, got = self.buffer .. data, false
  for line, pos in buffer:gmatch "([^\n]*)\n()" do
    self:deliver(line)
    self.buffer = buffer:sub(pos)
    got = true
  end
  if not got then self.buffer = buffer end
  return got
end

function PlainReader:start_reading()
  if self.reading then return end
  if self.stream then
    self.reading = true
    stdin_blocking(false)
    self.stream:read_start(function(err, data)
      if err then data = nil end
      if self:take(data) then
        self.reading = false
        self.stream:read_stop()
        stdin_blocking(true)
      end
    end)
  else
    -- a file: reads from the thread pool, one after another, until a line
    self.reading = true
    local function more()
      uv.fs_read(0, 4096, -1, function(err, data)
        if err or data == "" then data = nil end
        if self.closed then
          self.reading = false
        elseif self:take(data) then
          self.reading = false
        else
          more()
        end
      end)
    end
    more()
  end
end

function PlainReader:read(prompt)
  out(prompt)
  if self.lines:size() == 0 then
    if self.eof then
      if self.kind ~= "tty" then return nil end
      self.eof = false -- Ctrl+D on a terminal ends this line only
    end
    self:start_reading()
  end
  self.showing, self.prompt = true, prompt
  local ok, line = pcall(self.lines.get, self.lines)
  self.showing = false
  if not ok then error(line, 0) end
  if line == DISCARD then
    out "\n"
    return DISCARD
  end
  if line == false then
    if self.kind == "tty" then self.eof = true end
    return nil
  end
  if line:sub(-1) == "\r" then line = line:sub(1, -2) end
  if self.echo then out(line .. "\n") end
  return line
end

function PlainReader:above(fn, ...)
  -- the typed part of the line stays with the terminal; the prompt is drawn
  -- again below the output
  local unfinished = self.unfinished
  self.unfinished = false
  out "\r\027[K"
  local r = pack(pcall(fn, ...))
  stdout:flush()
  stderr:flush()
  if unfinished then out "\n" end
  out(self.prompt)
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, r.n)
end

function PlainReader:close()
  self.closed = true
  if self.stream and not self.stream:is_closing() then
    self.stream:read_stop()
    self.stream:close()
    stdin_blocking(true)
  end
end

-- Edited lines on a terminal, through libedit driven by a poll handle.
local EditReader = setmetatable({ __name = "coil.console_reader" },
                                { __index = Reader })
EditReader.__index = EditReader

local function edit_reader(edit)
  local self = setmetatable(new_reader("edit"), EditReader)
  self.edit = edit
  self.poll = uv.new_poll(0)
  if not self.poll then return nil end
  core.untrack(self.poll)
  self.winch = uv.new_signal()
  core.untrack(self.winch)
  self.winch:start("sigwinch", function() edit.resize() end)
  self.winch:unref()
  return self
end

function EditReader:read(prompt)
  local edit = self.edit
  edit.start(prompt)
  self.showing = true
  self.poll:start("r", function(err)
    if err then
      self.poll:stop()
      self:deliver(false)
      return
    end
    local line = edit.feed()
    if line ~= nil then
      self.poll:stop()
      self:deliver(line)
    end
  end)
  local ok, line = pcall(self.lines.get, self.lines)
  self.showing = false
  self.poll:stop()
  edit.stop()
  stdin_blocking(true)
  if not ok then error(line, 0) end
  if line == DISCARD then out "\n" end
  if line == false then
    out("\r\027[K" .. prompt) -- libedit drew the Ctrl+D as "^D"
    return nil
  end
  return line
end

function EditReader:above(fn, ...)
  local unfinished = self.unfinished
  self.unfinished = false
  self.edit.hide()
  local r = pack(pcall(fn, ...))
  stdout:flush()
  stderr:flush()
  if unfinished then out "\r\n" end
  self.edit.show()
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, r.n)
end

function EditReader:history(line) self.edit.history_add(line) end

function EditReader:close()
  if not self.poll:is_closing() then
    self.poll:stop()
    self.poll:close()
    self.winch:close()
    self.edit.stop()
    stdin_blocking(true)
  end
end

function Reader:history() end

local function history_path()
  local path = os.getenv "COIL_HISTORY"
  if path then return path ~= "" and path or nil end
  local home = os.getenv "HOME"
  return home and home ~= "" and home .. "/.coil_history" or nil
end

-- Tab completion ------------------------------------------------------------

local keywords = { "and", "break", "do", "else", "elseif", "end", "false",
  "for", "function", "goto", "if", "in", "local", "nil", "not", "or",
  "repeat", "return", "then", "true", "until", "while" }

-- Adds the keys of t, and of the tables its metatables' __index lead to,
-- that start with prefix (functions only when `methods`).
local function collect(found, t, prefix, methods)
  for _ = 1, 8 do -- a bounded walk: __index chains can loop
    if type(t) == "table" then
      for key, value in next, t do
        if type(key) == "string" and key:match "^[%a_][%w_]*$"
           and key:sub(1, #prefix) == prefix
           and (not methods or type(value) == "function") then
          found[key] = true
        end
      end
    end
    local mt = getmetatable(t)
    t = type(mt) == "table" and rawget(mt, "__index")
    if type(t) ~= "table" then return end
  end
end

-- t[name] by raw lookups along the __index tables: completing never calls
-- a function (a lazy module loader, a proxy), so Tab has no side effects.
local function lookup(t, name)
  for _ = 1, 8 do
    if type(t) == "table" then
      local value = rawget(t, name)
      if value ~= nil then return value end
    end
    local mt = getmetatable(t)
    t = type(mt) == "table" and rawget(mt, "__index")
    if type(t) ~= "table" then return nil end
  end
end

--- Tab: `coil.sl` -> `coil.sleep`, `t:na` -> `t:name`, `pri` -> `print`.
local function complete(word)
  local path, sep, prefix = word:match "^(.-)([.:]?)([%w_]*)$"
  if not path then return {} end
  local found, target = {}, _G
  if sep == "" then
    for _, k in ipairs(keywords) do
      if k:sub(1, #prefix) == prefix then found[k] = true end
    end
  else
    for name in (path .. "."):gmatch "([^.:]*)[.:]" do
      target = lookup(target, name)
      if target == nil then return {} end
    end
  end
  collect(found, target, prefix, sep == ":")
  local list = {}
  for key in next, found do list[#list + 1] = path .. sep .. key end
  table.sort(list)
  return list
end

--- The reader for fd 0: line editing on a terminal when built in.
local function open_reader()
  local kind = uv.guess_handle(0)
  if kind == "tty" and helper and helper.line_editing
     and os.getenv "TERM" ~= "dumb" then
    local reader = edit_reader(helper)
    if reader then
      helper.set_completer(complete)
      reader.history_file = history_path()
      if reader.history_file then
        reader.edit.history_load(reader.history_file)
      end
      return reader
    end
  end
  if kind ~= "tty" and kind ~= "pipe" and kind ~= "tcp" then kind = "file" end
  return plain_reader(kind)
end

-- Statements ---------------------------------------------------------------

local function get_prompt(first)
  local p = _G[first and "_PROMPT" or "_PROMPT2"]
  if p == nil then return first and "> " or ">> " end
  return tostring(p)
end

local function incomplete(err)
  return type(err) == "string" and err:sub(-5) == "<eof>"
end

--- Reads one statement as lua.c does: `=expr`, an expression first tried
-- with `return` in front, then more lines while the chunk is incomplete.
-- Returns "chunk", fn; "error", message (a syntax error); "discard" (Ctrl+C
-- dropped the statement); or "eof".
local function read_statement(reader)
  local line = reader:read(get_prompt(true))
  if line == nil then return "eof" end
  if line == DISCARD then return "discard" end
  if line:sub(1, 1) == "=" then line = "return " .. line:sub(2) end
  local chunk = load("return " .. line, "=stdin")
  if chunk then
    reader:history(line)
    return "chunk", chunk
  end
  local buffer = line
  while true do
    local err
    chunk, err = load(buffer, "=stdin")
    if chunk or not incomplete(err) then
      reader:history(buffer)
      if chunk then return "chunk", chunk end
      return "error", err
    end
    local more = reader:read(get_prompt(false))
    if more == DISCARD then return "discard" end
    if more == nil then
      reader:history(buffer)
      return "error", err
    end
    buffer = buffer .. "\n" .. more
  end
end

--- lua.c's message handler: an error object with __tostring is shown as
-- that, with no traceback; anything else gets one, cut where the console's
-- own frames begin and ended as lua.c's ends, in its C caller ("[C]: in
-- ?"). Cancelled passes through untouched.
local function msgh(err)
  if core.is_cancelled(err) then return err end
  local msg = err
  if type(msg) ~= "string" and type(msg) ~= "number" then
    local mt = getmetatable(err)
    if mt and mt.__tostring then
      local text = tostring(err)
      if type(text) == "string" then return text end
    end
    msg = ("(error object is a %s value)"):format(type(err))
  end
  local tb = traceback(msg, 2)
  -- the last xpcall frame is the console's own (statement_body)
  local cut, at = nil, 1
  while true do
    local found = tb:find("\n\t[C]: in function 'xpcall'", at, true)
    if not found then break end
    cut, at = found, found + 1
  end
  if cut then tb = tb:sub(1, cut - 1) .. "\n\t[C]: in ?" end
  return tb
end

local function statement_body(chunk)
  local r = pack(xpcall(chunk, msgh))
  if not r[1] and core.is_cancelled(r[2]) then error(r[2], 0) end
  return r
end

-- Unseen errors -----------------------------------------------------------

--- Reports, above the prompt, the errors of tasks that failed with nobody
-- listening (the reporter of SPEC §4, or coil.on_error's handler), instead
-- of waiting for the task to be collected or the process to end. While a
-- statement runs, only tasks older than it (before_id) are reported: the
-- statement may still await the ones it started.
local function report_unseen(reader, before_id)
  local unseen = getregistry()["coil.unseen"]
  if not unseen or next(unseen) == nil then return end
  local tasks = {}
  for task in next, unseen do
    if not before_id or select(3, core.state(task)) < before_id then
      tasks[#tasks + 1] = task
    end
  end
  for _, task in ipairs(tasks) do
    if unseen[task] then
      local err = task:error() -- seen now: never reported twice
      local extras = getuservalue(task, 2)
      local tb = type(extras) == "table" and extras.tb or tostring(err)
      local handler = getregistry()["coil.on_error"]
      if type(handler) == "function" then
        local ok, e = pcall(handler, task, err, tb)
        if not ok then
          core.report("error in the coil.on_error handler: " .. tostring(e))
        end
      else
        local text = ("coil: task '%s' failed and nobody awaited it: %s")
          :format(task:name(), tb):gsub("\n", "\n  ")
        if reader.showing then
          reader:above(raw.fwrite, stderr, text, "\n")
        else
          raw.fwrite(stderr, text, "\n")
          stderr:flush()
        end
      end
    end
  end
end

-- Output above the prompt ---------------------------------------------------

--- While a prompt waits, print, io.write and writes to io.stdout/io.stderr
-- go above it (the line being typed is drawn again below). Returns a
-- function that puts the originals back.
local function route_output(reader)
  -- Writes that do not end a line still get the prompt on a line of its
  -- own (the next write above it would wipe that unfinished line).
  local function above(fn, ...)
    local last = select(-1, ...)
    reader.unfinished = not (type(last) == "string" and last:sub(-1) == "\n")
    return reader:above(fn, ...)
  end
  _G.print = function(...)
    if reader.showing then return reader:above(raw.print, ...) end
    return raw.print(...)
  end
  io.write = function(...)
    if reader.showing and io.output() == stdout and select("#", ...) > 0 then
      return above(raw.write, ...)
    end
    return raw.write(...)
  end
  file_methods.write = function(f, ...)
    if reader.showing and (f == stdout or f == stderr)
       and select("#", ...) > 0 then
      return above(raw.fwrite, f, ...)
    end
    return raw.fwrite(f, ...)
  end
  return function()
    _G.print, io.write, file_methods.write = raw.print, raw.write, raw.fwrite
  end
end

-- The console ---------------------------------------------------------------

local active = false

--- ⏳ Runs the console in the calling task until the end of input (Ctrl+D).
-- `coil -i` runs it in the main task; a script may call it to open a
-- console where it stands.
-- @return nothing, at the end of input
-- @raise "coil: the console must run inside a task"; "coil: the console is
--   already running"; Cancelled if the calling task is cancelled (the
--   shutdown), after the console has given the terminal back
function M.run()
  if not core.current() then
    error("coil: the console must run inside a task", 2)
  end
  if active then error("coil: the console is already running", 2) end
  active = true
  local reader = open_reader()
  -- as `python -m asyncio` has asyncio: coil is at hand at the prompt
  if _G.coil == nil then _G.coil = require "coil" end
  local running -- the statement's task while one runs
  -- Ctrl+C already served by the busy-task hook, which is on only while a
  -- statement runs (never in the console's own code)
  local owed = 0

  local restore = route_output(reader)
  local sigint = core.on_signal("SIGINT", function()
    owed = owed + core.interrupt_busy(running ~= nil)
    if owed > 0 then
      owed = owed - 1
    elseif running then
      running:cancel "SIGINT"
    elseif reader.showing then
      reader:discard()
    end
  end)
  -- a prepare handle runs before the loop blocks, after the tasks that
  -- could fail have run
  local watch = uv.new_prepare()
  core.untrack(watch)
  watch:start(function()
    if reader.showing then
      report_unseen(reader)
    elseif running then
      report_unseen(reader, select(3, core.state(running)))
    end
  end)
  watch:unref()

  local function finish()
    active = false
    core.interrupt_busy(false)
    sigint:close()
    if not watch:is_closing() then watch:close() end
    reader:close()
    restore()
    if reader.history_file then
      local saved, err = reader.edit.history_save(reader.history_file)
      if not saved then
        core.report(("console: cannot save the history in %s: %s")
          :format(reader.history_file, tostring(err)))
      end
    end
  end
  local _ <close> = setmetatable({}, { __close = finish })

  while true do
    report_unseen(reader)
    local what, chunk = read_statement(reader)
    if what == "chunk" then
      running = core.spawn(statement_body, chunk)
      running:name "console statement"
      core.interrupt_busy(true)
      local ok, r = pcall(running.await, running)
      owed = owed + core.interrupt_busy(false)
      running = nil
      if not ok then
        if not core.is_cancelled(r) or core.phase() ~= "run" then
          error(r, 0)
        end
        out "\n"
      elseif r[1] then
        if r.n > 1 then
          local printed, perr = pcall(print, unpack(r, 2, r.n))
          if not printed then
            raw.fwrite(stderr, ("error calling 'print' (%s)\n"):format(
              tostring(perr)))
          end
        end
      else
        raw.fwrite(stderr, tostring(r[2]), "\n")
        stderr:flush()
      end
    elseif what == "error" then
      raw.fwrite(stderr, chunk, "\n")
      stderr:flush()
    elseif what == "eof" then
      break
    end
    stdout:flush()
  end
  out "\n"
end

--- The main task of `coil -i`: the command line's own main task (cli, with
-- its arguments), then the console, as lua.c runs the script before its
-- REPL. A script that could not be loaded ends the run without a console.
function M.main(cli, ...)
  -- cli returns 1 when the script or a -e chunk could not be loaded (a
  -- script's own return value means nothing under -i, as in lua.c)
  if cli(...) == 1 then return 1 end
  M.run()
  -- the end of input ends coil: background tasks are cancelled (SPEC §8)
  core.shutdown(0)
end

return M
