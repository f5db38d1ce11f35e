--- Starts stock lua5.4 with the build's coil.so first on package.cpath (the
-- build next to COIL_BIN), for the specs that drive coil as a module. A
-- sanitized coil.so (COIL_SANITIZED) only loads behind the sanitizers'
-- runtimes, so they are preloaded then.
local proc = require "spec.support.proc"
local uv = require "luv"

local M = {}

local function absolute(path)
  return path:sub(1, 1) == "/" and path or uv.cwd() .. "/" .. path
end

M.build = absolute(COIL_BIN):match "^(.*)/[^/]+$"
M.sanitized = os.getenv "COIL_SANITIZED" ~= nil

-- M.env: the environment for a process that loads a sanitized coil.so (nil
-- when the build is not sanitized); M.preload: the same as a prefix for a
-- shell command line ("" when not sanitized).
local env
M.preload = ""
if M.sanitized then
  local libs = {}
  for _, lib in ipairs { "libasan.so", "libubsan.so" } do
    local p = assert(io.popen("gcc -print-file-name=" .. lib))
    libs[#libs + 1] = p:read "l"
    p:close()
  end
  env = { "LD_PRELOAD=" .. table.concat(libs, " "),
          "ASAN_OPTIONS=" .. (os.getenv "ASAN_OPTIONS" or "detect_leaks=1"),
          "UBSAN_OPTIONS=" .. (os.getenv "UBSAN_OPTIONS" or "print_stacktrace=1") }
  for _, name in ipairs { "PATH", "HOME", "LANG" } do
    if os.getenv(name) then env[#env + 1] = name .. "=" .. os.getenv(name) end
  end
  for _, var in ipairs(env) do
    local name, value = var:match "^([^=]+)=(.*)$"
    M.preload = M.preload .. name .. "='" .. value:gsub("'", "'\\''") .. "' "
  end
end
M.env = env

--- Starts `lua5.4 script args...` with coil.so from the build; a proc
-- object (spec/support/proc.lua).
function M.lua(script, args)
  local argv = { "-e", ("package.cpath = %q .. package.cpath"):format(M.build .. "/?.so;"),
                 script }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  return proc.start("lua5.4", argv, { env = env })
end

--- Whether stderr holds a report of AddressSanitizer or UBSan.
function M.sanitizer_report(stderr)
  return stderr:find("ERROR: AddressSanitizer", 1, true)
      or stderr:find("ERROR: LeakSanitizer", 1, true)
      or stderr:find("runtime error: ", 1, true)
end

return M
