-- W2 switch: one task yields to the loop M times.
local cqueues = require "cqueues"
local M = tonumber(arg[1]) or 1000000

local cq = cqueues.new()
cq:wrap(function()
  local count = 0
  for _ = 1, M do cqueues.sleep(0); count = count + 1 end
  print("count " .. count)
end)
assert(cq:loop())
