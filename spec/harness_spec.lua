local proc = require "spec.support.proc"
describe("the spec harness", function()
  it("runs coil and sees its output", function()
    local r = proc.run({ "spec/fixtures/hello_ready.lua" })
    assert.equal(0, r.code)
    assert.equal("ready\n", r.stdout)
  end)
end)
