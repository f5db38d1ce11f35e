-- workers.lua: a pool of shell jobs, at most 3 at a time, each with its own
-- timeout. A job that overstays is killed with its whole process group
-- (its own children too: no orphans), and the pool goes on. Ctrl+C kills
-- the jobs still running, the same way, and waits until they are gone.
--
--   build/coil examples/workers.lua
local coil = require "coil"
io.stdout:setvbuf("line")

local jobs = {
  { "quick", "echo hello", 2 },
  { "count", "for i in 1 2 3; do echo $i; sleep 0.1; done", 2 },
  { "slow", "sleep 300 & sleep 301", 0.5 },      -- overstays: killed, children too
  { "fails", "echo oops >&2; exit 3", 2 },
  { "pipeline", "seq 1 1000 | wc -l", 2 },
}

local slots = coil.semaphore(3)

local function run(job)
  local name, cmd, limit = job[1], job[2], job[3]
  return slots:with(function()
    local ok, r = pcall(coil.timeout, limit, coil.process.run, "sh", { "-c", cmd })
    if not ok then
      if coil.is_timeout(r) then
        print(("%-8s timed out after %.1f s: killed with its children"):format(name, limit))
        return
      end
      error(r, 0)
    end
    local out = r.stdout:gsub("\n", " ")
    print(("%-8s exit %d  out: %s err: %s"):format(name, r.status, out, (r.stderr:gsub("\n", " "))))
  end)
end

local tasks = {}
for i, job in ipairs(jobs) do tasks[i] = coil.spawn(run, job) end
coil.gather(tasks)
print("all jobs done")
