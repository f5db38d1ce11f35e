-- hello.lua: three tasks, one loop. Run: build/coil examples/hello.lua
local coil = require "coil"

local function greeter(name, delay)
  coil.sleep(delay)
  print(("hello from %s after %.1f s"):format(name, delay))
  return name
end

local tasks = {}
for i, name in ipairs { "ann", "bob", "cy" } do
  tasks[i] = coil.spawn(greeter, name, 0.1 * (4 - i))
end
for _, task in ipairs(tasks) do task:await() end
print("all three greeted; the loop ran them side by side")
