-- tail.lua: follows a file, like `tail -f`: prints its last lines, then
-- every line appended to it, polling with coil.fs. A file truncated or
-- replaced (log rotation) is read again from its start. Press Ctrl+C: the
-- file is closed (it belongs to the task that opened it) and the process
-- dies by SIGINT.
--
--   build/coil examples/tail.lua FILE [LINES]   (LINES defaults to 10)
local coil = require "coil"
local fs = coil.fs

local path, keep = arg[1], tonumber(arg[2]) or 10
if not path then
  io.stderr:write("usage: coil examples/tail.lua FILE [LINES]\n")
  return 2
end
io.stdout:setvbuf("line")

local POLL = 0.1 -- seconds between looks at a file that did not grow

-- Opens path; returns the file and its inode, or nil, err.
local function open()
  local file, err = fs.open(path)
  if not file then return nil, err end
  local st = fs.stat(path)
  return file, st and st.ino
end

local file, ino = open()
if not file then
  io.stderr:write("tail: ", ino, " (waiting for it)\n") -- ino is the error here
  repeat
    coil.sleep(POLL)
    file, ino = open()
  until file
end

-- The start: read everything, keep the last `keep` complete lines.
local last, partial, offset = {}, "", 0
while true do
  local data = file:read()
  if not data then break end
  offset = offset + #data
  data = partial .. data
  partial = data:match("[^\n]*$")
  for line in data:gmatch("([^\n]*)\n") do
    last[#last + 1] = line
    if #last > keep then table.remove(last, 1) end
  end
end
for _, line in ipairs(last) do print(line) end

-- Then follow it.
while true do
  local data = file:read()
  if data then
    offset = offset + #data
    data = partial .. data
    partial = data:match("[^\n]*$")
    for line in data:gmatch("([^\n]*)\n") do print(line) end
  else
    coil.sleep(POLL)
    local st = fs.stat(path)
    if not st or st.ino ~= ino or st.size < offset then
      -- truncated, replaced or removed: start again with what is there now
      io.stderr:write("tail: ", path, " was truncated or replaced\n")
      file:close()
      file, ino = open()
      while not file do
        coil.sleep(POLL)
        file, ino = open()
      end
      partial, offset = "", 0
    end
  end
end
