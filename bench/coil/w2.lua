-- W2 switch: one task (the main one) yields to the loop M times.
local coil = require "coil"
local M = tonumber(arg[1]) or 1000000

local count = 0
for _ = 1, M do
  coil.sleep(0)
  count = count + 1
end
print("count " .. count)
