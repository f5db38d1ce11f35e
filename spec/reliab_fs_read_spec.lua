-- file:read(n) with a huge n reads what is there (issue 11, item 7): luv
-- takes the size as 32 bits and allocates it whole.
local fs = require "coil.fs"

describe("file:read(n) with a huge n", function()
  local path = os.tmpname()

  it("reads what is there, for n >= 2^32 and math.maxinteger", function()
    local f = assert(io.open(path, "w"))
    f:write(("0123456789"):rep(1000))
    f:close()
    for _, n in ipairs({ 1 << 32, (1 << 32) + 5, math.maxinteger }) do
      local file <close> = assert(fs.open(path, "r"))
      local data = file:read(n)
      assert.equal(10000, #data, tostring(n))
      assert.is_nil(file:read(n))
    end
    os.remove(path)
  end)
end)
