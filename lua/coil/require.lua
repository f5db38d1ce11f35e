--- An awaitable `require`: the stock C require cannot be yielded across, so
-- a module that awaits while it loads needs this one. Same protocol as the
-- stock one (package.loaded, package.searchers, loader(name, extra)); a
-- second task requiring a module that is still loading waits for it.
local core = require "coil.core"

local package, type, error, setmetatable, tostring, select =
  package, type, error, setmetatable, tostring, select
local concat = table.concat
local current, park, wake = core.current, core.park, core.wake

local loading = {} -- name -> list of tasks waiting for it

local function require(...)
  local name = ...
  local kind = select("#", ...) == 0 and "no value" or type(name)
  if kind == "number" then name = tostring(name) -- as luaL_checkstring
  elseif kind ~= "string" then
    error(("bad argument #1 to 'require' (string expected, got %s)")
          :format(kind), 2)
  end
  local loaded = package.loaded
  local value = loaded[name]
  if value then return value end

  local waiting = loading[name]
  if waiting then
    local me = current()
    if me then
      waiting[#waiting + 1] = me
      park()
      value = loaded[name]
      if value then return value end
    end
  end

  local searchers = package.searchers
  if type(searchers) ~= "table" then
    error("'package.searchers' must be a table", 2)
  end
  -- the stock message: each searcher's own text after "\n\t"
  local messages = {}
  for i = 1, math.huge do
    local searcher = searchers[i]
    if searcher == nil then break end
    local loader, extra = searcher(name)
    if type(loader) == "function" then
      local list = {}
      loading[name] = list
      -- however the loader ends, tasks waiting for this module go on
      local _ <close> = setmetatable({}, { __close = function()
        loading[name] = nil
        for j = 1, #list do wake(list[j]) end
      end })
      local result = loader(name, extra)
      if result ~= nil then loaded[name] = result
      elseif loaded[name] == nil then loaded[name] = true end
      return loaded[name], extra
    elseif type(loader) == "string" then
      messages[#messages + 1] = "\n\t" .. loader
    end
  end
  error(("module '%s' not found:%s"):format(name, concat(messages)), 2)
end

return require
