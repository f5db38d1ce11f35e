-- luacheck (Debian's lua-check) for the Lua half of coil, run by
-- scripts/test: `luacheck lua`.
std = "lua54"
max_line_length = false
self = false -- methods that ignore self (a no-op history, say) are fine
-- coil takes os.exit over inside its host (graceful: cleanup runs first)
files["lua/coil/init.lua"] = { globals = { "os.exit" } }
-- the console routes io.write through its line editor while it runs
files["lua/coil/console.lua"] = { globals = { "io.write" } }
