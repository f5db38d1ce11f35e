--- coil.group (SPEC §4): a task group, Trio's nursery and asyncio's
-- TaskGroup. The body runs in the calling task; `g:spawn` starts children
-- the group owns; coil.group returns only once every child is done.
--
-- The first failure (of the body or a child) cancels the rest: the body
-- through a cancel scope of combinators.lua (a soft cancellation of the
-- calling task, so a timeout or a cancellation from outside keeps its
-- meaning), the children with a Cancelled of the group's. Children are
-- watched with on_done, which also counts as seeing their errors: what the
-- group raises is never reported again as an error nobody saw.
local core = require "coil.core"
local C = package.loaded["coil.combinators"]

local error, pcall, setmetatable, getmetatable, tostring, type, pairs, rawequal =
  error, pcall, setmetatable, getmetatable, tostring, type, pairs, rawequal
local pack, unpack, sort = table.pack, table.unpack, table.sort

local spawn, park, wake, is_cancelled = core.spawn, core.park, core.wake,
  core.is_cancelled
local cancel_with, Cancelled = core.cancel, core.Cancelled
local enter, expire, leave, stronger = C._enter, C._expire, C._leave, C._stronger
local need_task, is_callable, shutting_down = C._need_task, C._is_callable,
  C._shutting_down
local result_of = debug.getregistry()["coil.task"].__index.result
local on_done = debug.getregistry()["coil.task"].__index.on_done

local M = {}

--- The error coil.group raises when several failed: `errors` lists them
-- in the order they failed; tostring gives the first one's.
local GroupError = { __name = "coil.GroupError" }
function GroupError:__tostring() return tostring(self.errors[1]) end
M.GroupError = GroupError

local Group = { __name = "coil.group" }
Group.__index = Group

function Group:__tostring()
  return ("coil.group (%s, %d task(s) running)"):format(self._state, self._live)
end

local function check_self(g, what)
  if getmetatable(g) ~= Group then
    error(("coil: group:%s: call it as g:%s(...) on the group coil.group gave")
          :format(what, what), 3)
  end
end

--- Cancels the body (if it still runs) and every child not done, once.
-- `with` is the Cancelled the children get (an outside one is passed on).
local function start_cancel(g, with)
  if g._cancelling then return end
  g._cancelling = with or g._cancel_obj
  if g._rec then expire(g._rec) end
  if shutting_down() then return end -- the shutdown cancelled them all
  local list = {}
  for t, seq in pairs(g._children) do list[#list + 1] = { t, seq } end
  sort(list, function(a, b) return a[2] < b[2] end)
  for i = 1, #list do cancel_with(list[i][1], g._cancelling) end
end

local function add_error(g, err)
  local errors = g._errors
  errors[#errors + 1] = err
  start_cancel(g)
end

local function seen(g, err)
  local errors = g._errors
  for i = 1, #errors do
    if rawequal(errors[i], err) then return true end
  end
  return false
end

-- A child is done: count it, note its failure (a Cancelled is none).
local function child_done(g, t)
  g._children[t] = nil
  g._live = g._live - 1
  local ok, err = pcall(result_of, t)
  if not ok and not is_cancelled(err) then add_error(g, err) end
  if g._live == 0 and g._parked then
    g._parked = false
    wake(g._owner)
  end
end

--- g:spawn(fn, ...) → task: starts fn(...) as a child of the group. Any
-- task may spawn into the group (children spawn more) until it finished;
-- once the group is cancelling, the child starts cancelled.
-- @raise if the group has finished, or fn is not callable
function Group:spawn(fn, ...)
  check_self(self, "spawn")
  if self._state == "finished" then
    error("coil: group:spawn: the group has finished; nothing more can be spawned into it", 2)
  end
  if not is_callable(fn) then
    error("coil: group:spawn expects a function, got " .. type(fn), 2)
  end
  local t = spawn(fn, ...)
  local seq = self._seq + 1
  self._seq = seq
  self._children[t] = seq
  self._live = self._live + 1
  on_done(t, self._watch)
  if self._cancelling and not shutting_down() then
    cancel_with(t, self._cancelling)
  end
  return t
end

--- g:cancel(): cancels the body and every child; coil.group then returns
-- nothing once they are done (unless one of them failed).
-- @return false if the group had finished already, else true
function Group:cancel()
  check_self(self, "cancel")
  if self._state == "finished" then return false end
  self._user_cancelled = true
  start_cancel(self)
  return true
end

-- Waits until every child is done. Returns the Cancelled to raise: own
-- (the one that ended the body, if any) or one that reached the waiting
-- task meanwhile (passed on to the children); and an error that ends the
-- wait at once (closed by force).
local function wait_children(g, own)
  while g._live > 0 do
    g._parked = true
    local ok, err = pcall(park)
    g._parked = false
    if not ok then
      if not is_cancelled(err) then
        -- closed by force: no await can wait any more
        start_cancel(g)
        return own, err
      end
      own = stronger(g._owner, own, err)
      start_cancel(g, err)
    end
  end
  return own
end

local function finish(g, own, fatal)
  g._state = "finished"
  if fatal ~= nil then error(fatal, 0) end
  local errors = g._errors
  if #errors == 1 then error(errors[1], 0) end
  if #errors > 1 then error(setmetatable({ errors = errors }, GroupError), 0) end
  if own ~= nil then error(own, 0) end
end

--- ⏳ coil.group(fn, ...): runs fn(g, ...) in this task with a task group g.
-- @return fn's results, once every child is done; nothing after g:cancel()
-- @raise the first error of fn or a child, once everything else in the
--   group was cancelled and is done; when several failed, a GroupError
--   (`errors` in the order they failed, tostring the first's). Cancelled
--   when the calling task was cancelled (and nothing failed), after every
--   child was cancelled and is done
function M.group(fn, ...)
  local me = need_task "group"
  if not is_callable(fn) then
    error("coil: group expects a function, got " .. type(fn), 2)
  end
  local g = setmetatable({
    _owner = me, _state = "running", _live = 0, _seq = 0,
    _children = {}, _errors = {},
    _cancel_obj = Cancelled("group cancelled"),
  }, Group)
  g._watch = function(t) child_done(g, t) end
  local rec = enter(me, Cancelled("group cancelled"))
  g._rec = rec
  local res = pack(pcall(fn, g, ...))
  g._rec = nil
  g._state = "waiting"

  local own
  local left, mine = pcall(leave, rec, res[1], res[2])
  if not left then
    own = mine -- an outer scope's cancellation, now ours to pass on
  elseif not res[1] and not mine then
    local err = res[2]
    if is_cancelled(err) then
      own = err
    elseif not seen(g, err) then -- (a child's error the body awaited is one)
      add_error(g, err)
    end
  end
  if own ~= nil then start_cancel(g, own) end

  local fatal
  own, fatal = wait_children(g, own)
  finish(g, own, fatal)
  if g._user_cancelled then return end
  return unpack(res, 2, res.n)
end

return M
