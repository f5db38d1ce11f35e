-- generator.lua: coroutines stay coroutines inside coil. A generator that
-- awaits between its yields, used in a plain for loop, and a coroutine
-- iterator over lines read from a child process; each await suspends the
-- whole task and the generator goes on where it stopped (SPEC §7).
--
--   build/coil examples/generator.lua
local coil = require "coil"

--- Counts to n, one number every `every` seconds.
local function countdown(n, every)
  return coroutine.wrap(function()
    for i = n, 1, -1 do
      coil.sleep(every)
      coroutine.yield(i)
    end
  end)
end

--- The lines a stream gives, one by one, as a for-loop iterator.
local function lines(stream)
  return coroutine.wrap(function()
    for line in function() return stream:read_line() end do
      coroutine.yield(line)
    end
  end)
end

for i in countdown(3, 0.1) do print("countdown " .. i) end

local child = coil.process.spawn("printf", { "alpha\\nbeta\\ngamma\\n" },
                                 { stdout = "pipe" })
for line in lines(child.stdout) do print("line: " .. line) end
child:wait()
print("done")
