-- run_jobs.lua: runs shell commands, at most N at a time, each line of
-- their output prefixed with the job's number. The limit is a pool of N
-- worker tasks taking the next job in turn. Press Ctrl+C: the running
-- children get SIGTERM (SIGKILL if they outlive the cleanup), no new job
-- starts, each worker reports its job interrupted, and the process dies by
-- SIGINT. No child is left behind.
--
--   build/coil examples/run_jobs.lua [-j N] 'command' ...   (N defaults to 2)
--   build/coil examples/run_jobs.lua                       (a small demo)
--
-- Exit status: 0 if every job succeeded, 1 otherwise.
local coil = require "coil"

io.stdout:setvbuf("line")

local limit, jobs = 2, {}
local i = 1
while arg[i] do
  if arg[i] == "-j" then
    limit = math.tointeger(tonumber(arg[i + 1]))
    if not limit or limit < 1 then
      io.stderr:write("run_jobs: -j needs a positive number\n")
      return 2
    end
    i = i + 2
  else
    jobs[#jobs + 1] = arg[i]
    i = i + 1
  end
end
if #jobs == 0 then
  jobs = {
    "echo compiling; sleep 1; echo compiled",
    "echo testing; sleep 2; echo tested",
    "echo linting; sleep 0.5; echo 'lint: 3 warnings'; exit 3",
    "sleep 0.2; echo packaged",
  }
end

local failed, taken = 0, 0

-- Runs job n to its end; returns true if it succeeded.
local function run(n)
  local command = jobs[n]
  local child, err = coil.process.spawn("sh", { "-c", command }, { stdout = "pipe" })
  if not child then
    print(("[%d] could not start: %s"):format(n, err))
    return false
  end
  print(("[%d] started (pid %d): %s"):format(n, child.pid, command))
  local ok, e = pcall(function()
    while true do
      local line = child.stdout:read_line()
      if not line then break end
      print(("[%d] %s"):format(n, line))
    end
  end)
  child.stdout:close()
  if not ok then
    if coil.is_cancelled(e) then
      -- the shutdown already sent the child SIGTERM
      print(("[%d] interrupted (pid %d)"):format(n, child.pid))
    end
    error(e, 0)
  end
  local code, signal = child:wait()
  if signal ~= 0 then
    print(("[%d] killed by signal %d"):format(n, signal))
  else
    print(("[%d] exited %d"):format(n, code))
  end
  return code == 0 and signal == 0
end

local function worker()
  while taken < #jobs do
    taken = taken + 1
    if not run(taken) then failed = failed + 1 end
  end
end

local workers = {}
for w = 1, math.min(limit, #jobs) do
  workers[w] = coil.spawn(worker)
  workers[w]:name("worker-" .. w)
end
for _, w in ipairs(workers) do w:await() end

print(("%d job(s), %d failed"):format(#jobs, failed))
return failed == 0 and 0 or 1
