-- Property tests for coil.group: random trees of groups whose children
-- (leaves, nested groups in children and in bodies, children spawning more)
-- fail or are cancelled at random moments, with random g:cancel() and
-- cancellations of the root from outside. Scheduling only uses sleep(0), so
-- a seed replays exactly.
--
--   COIL_SEED=n        run only seed n (replay a failure)
--   COIL_PROP_RUNS=k   seeds per property (default 400)
--
-- Checked for every seed: every cleanup ran exactly once; every group
-- raised the first error that reached it (or a GroupError listing them all,
-- in the order they failed), Cancelled only when cancelled from outside
-- with no error, nothing after g:cancel(); no task is left.
local coil = require "coil"
local util = require "spec.support.util"
local turns = util.turns


local random = math.random

local function for_seeds(check) util.for_seeds(check, 400) end

local function check(cond, fmt, ...)
  if not cond then error(fmt:format(...), 2) end
end

-- One random tree. Returns the world: every group's record, every cleanup
-- count, the root task.
local function build_world()
  local world = { groups = {}, cleaned = {}, leaves = {}, ids = 0 }

  local function new_id(prefix)
    world.ids = world.ids + 1
    return prefix .. world.ids
  end

  local function cleanup(id)
    world.cleaned[id] = (world.cleaned[id] or 0) + 1
  end

  local spawn_child -- forward

  -- a group node: records what reached it, in order, and what it did
  local function run_group(depth)
    local rec = { errors = {}, id = new_id "g" }
    world.groups[#world.groups + 1] = rec
    local body_id = rec.id .. "-body"
    local r = table.pack(pcall(coil.group, function(g)
      rec.g = g
      world.cleaned[body_id] = 0
      local ok, e = pcall(function()
        for _ = 1, random(1, 4) do
          spawn_child(g, rec, depth + 1)
          if random() < 0.5 then turns(random(1, 3)) end
          if random() < 0.1 and depth < 3 then
            -- a nested group in the body
            local nested = run_group(depth + 1)
            if not nested.ok then error(nested.err, 0) end
          end
        end
        if random() < 0.15 then error(new_id "body-fail-", 0) end
        if random() < 0.5 then turns(random(1, 5)) end
        return "result of " .. rec.id
      end)
      -- the body's cleanup (may await; a cancellation there is raised if
      -- the body ended well, else what the body ended with is kept)
      cleanup(body_id)
      if random() < 0.3 then
        local ok2, e2 = pcall(turns, random(1, 2))
        if not ok2 and ok then ok, e = false, e2 end
      end
      if not ok then
        if not coil.is_cancelled(e) then rec.errors[#rec.errors + 1] = e end
        error(e, 0)
      end
      return e
    end))
    rec.done = true
    rec.ok, rec.err, rec.n, rec.value = r[1], r[2], r.n, r[2]
    return rec
  end

  -- a child of group g: a leaf, or (sometimes) a nested group
  function spawn_child(g, rec, depth)
    local id = new_id "c"
    local kind = random()
    local t
    if kind < 0.15 and depth < 4 then
      t = g:spawn(function()
        coil.defer(cleanup, id)
        local nested = run_group(depth)
        if not nested.ok then error(nested.err, 0) end
      end)
    else
      local fate = random()
      t = g:spawn(function()
        coil.defer(cleanup, id)
        local ok, e = pcall(turns, random(0, 6))
        if not ok and random() < 0.5 then
          -- a cleanup that awaits (a second cancellation would cut it short)
          turns(random(1, 2))
        end
        if random() < 0.2 then
          -- spawns a sibling (even while the group is cancelling)
          spawn_child(g, rec, depth + 1)
        end
        if not ok then
          if random() < 0.2 then error(new_id "cleanup-fail-", 0) end
          error(e, 0)
        end
        if fate < 0.2 then error(new_id "fail-", 0) end
        if fate < 0.25 and g:cancel() then rec.user_cancelled = true end
      end)
      world.leaves[#world.leaves + 1] = t
    end
    t:name(id .. (kind < 0.15 and depth < 4 and "-nest" or "-leaf"))
    world.cleaned[id] = 0
    -- an observer after the group's own: same order of completion
    t:on_done(function(task)
      local ok, e = pcall(task.result, task)
      if not ok and not coil.is_cancelled(e) then rec.errors[#rec.errors + 1] = e end
    end)
    return t
  end

  world.root = coil.spawn(function()
    local rec = run_group(0)
    -- what the group raised goes on up (catching a cancellation, or an
    -- error that replaced one, would swallow it)
    if not rec.ok then error(rec.err, 0) end
  end)
  world.root:name("root")
  return world
end

describe("coil.group properties", function()
  it("random trees: cleanup once, the first error raised, nothing left", function()
    for_seeds(function()
      local world = build_world()
      local cancelled_root = false
      -- the driver: random cancellations while things run
      for _ = 1, random(0, 25) do
        coil.sleep(0)
        if world.root:done() then break end
        local p = random()
        if p < 0.08 then
          local leaf = world.leaves[random(#world.leaves)]
          if leaf then leaf:cancel("driver") end
        elseif p < 0.12 then
          local rec = world.groups[random(#world.groups)]
          if rec.g and rec.g:cancel() then rec.user_cancelled = true end
        elseif p < 0.14 then
          cancelled_root = true
          world.root:cancel("root")
        end
      end
      local ok, err = pcall(world.root.await, world.root)
      local rootrec = world.groups[1]
      check(ok or rawequal(err, rootrec.err), "the root task raised %s", tostring(err))

      -- no task left
      turns(2)
      local left = #coil.tasks() - 1
      check(left == 0, "%d task(s) left", left)
      -- every cleanup exactly once
      for id, n in pairs(world.cleaned) do
        check(n == 1, "cleanup of %s ran %d time(s)", id, n)
      end
      -- every group: the first error, or all of them in order
      for _, rec in ipairs(world.groups) do
        check(rec.done, "group %s never finished", rec.id)
        local errs = rec.errors
        if #errs == 1 then
          check(not rec.ok and rawequal(rec.err, errs[1]),
                "group %s raised %s, expected %s", rec.id, tostring(rec.err), tostring(errs[1]))
        elseif #errs > 1 then
          check(not rec.ok and type(rec.err) == "table" and rec.err.errors,
                "group %s raised %s, expected a GroupError", rec.id, tostring(rec.err))
          check(tostring(rec.err) == tostring(errs[1]), "group %s: tostring %s, first %s",
                rec.id, tostring(rec.err), tostring(errs[1]))
          check(#rec.err.errors == #errs, "group %s: %d errors, expected %d",
                rec.id, #rec.err.errors, #errs)
          for i = 1, #errs do
            check(rawequal(rec.err.errors[i], errs[i]), "group %s: error %d is %s, expected %s",
                  rec.id, i, tostring(rec.err.errors[i]), tostring(errs[i]))
          end
        elseif not rec.ok then
          -- cancelled from outside: by the driver, or by an enclosing group
          check(coil.is_cancelled(rec.err), "group %s raised %s with no error",
                rec.id, tostring(rec.err))
          check(rec ~= world.groups[1] or cancelled_root,
                "the root group raised %s but nothing cancelled it", tostring(rec.err))
        elseif rec.user_cancelled then
          check(rec.n == 1, "group %s was cancelled with g:cancel() but returned %s",
                rec.id, tostring(rec.value))
        else
          check(rec.n == 2 and rec.value == "result of " .. rec.id,
                "group %s returned %s", rec.id, tostring(rec.value))
        end
      end
    end)
  end)
end)
