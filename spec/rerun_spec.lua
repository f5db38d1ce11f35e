-- A runtime that runs again (SPEC §5): coil.run after a coil.run that ended
-- in a shutdown starts clean, in stock lua5.4 loading the build's coil.so.
local proc = require "spec.support.proc"
local uv = require "luv"

local ROOT = uv.cwd()
local BUILD = COIL_BIN:sub(1, 1) == "/" and COIL_BIN or ROOT .. "/" .. COIL_BIN
BUILD = BUILD:match "^(.*)/[^/]+$"

local stock = require "spec.support.stock"

describe("coil.run again after a shutdown", function()
  it("starts with stopping() clear and no hook of an earlier run (one registered between runs counts)", function()
    local p = proc.start("lua5.4", {
      "-e", ("package.cpath = %q .. package.cpath"):format(BUILD .. "/?.so;"),
      "spec/fixtures/module_rerun.lua" }, { env = stock.env })
    local r = p:wait(30)
    assert.is_false(r.timed_out, r.stderr)
    assert.equal(0, r.code, r.stderr)
    assert.equal(table.concat({
      "first\tfalse\tcancelled: shutdown",
      "second\tfalse",
      "stopping set again\tfalse",
      "third\tfalse\tcancelled: shutdown",
      "hooks\t101", "" }, "\n"), r.stdout)
  end)
end)
