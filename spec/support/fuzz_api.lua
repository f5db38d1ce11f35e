--- The public API the fuzzer calls (spec/fixtures/fuzz_run.lua), one line
-- per function or method: its name, then the kind of each argument (the
-- generators in spec/fixtures/fuzz_run.lua; a kind gives a plausible value
-- most of the time and a hostile one otherwise).
--
-- "coil.x.y" is looked up in the module when the fuzzer starts; a name that
-- does not exist (API not merged yet) is skipped and listed. "kind:method"
-- is a method: its self is an object of that kind (or, sometimes, anything
-- else: a wrong self must raise a clear error too).
--
-- Flags on a line:
--   waits = true   the call may wait: it runs in a task the fuzzer may
--                  cancel, and its list and option arguments are mutated
--                  while it waits
--   list = i       argument i is a list the call watches (mutated while
--                  it waits unless COIL_FUZZ_MUTATE_LISTS=0)
-- Every call is also made, now and then, out of any task (from a raw luv
-- callback), from an inner coroutine, and from where nothing can wait.
return {
  -- tasks
  { "coil.spawn", "fn", "any", "any" },
  { "coil.current" },
  { "coil.tasks" },
  { "coil.shield", "task", waits = true },
  { "coil.defer", "fn", "any" },
  { "coil.is_cancelled", "any" },
  { "coil.is_timeout", "any" },
  { "coil.is_interrupted", "any" },
  { "coil.sleep", "seconds", waits = true },
  { "coil.now" },
  { "coil.run", "fn", "any" },
  { "task:await", waits = true },
  { "task:cancel", "message" },
  { "task:done" },
  { "task:cancelled" },
  { "task:result" },
  { "task:error" },
  { "task:name", "name" },
  { "task:on_done", "fn" },

  -- combinators
  { "coil.gather", "tasks", "gather_opts", waits = true, list = 1 },
  { "coil.gather", "task", "task", "fn", waits = true },
  { "coil.wait", "task_list", "wait_opts", waits = true, list = 1 },
  { "coil.race", "tasks", waits = true, list = 1 },
  { "coil.race", "task", "fn", waits = true },
  { "coil.timeout", "seconds", "fn", "any", waits = true },
  { "coil.call_later", "seconds", "fn", "any" },
  { "call_later:cancel" },
  { "call_later:task" },
  { "coil.group", "group_fn", "any", waits = true },
  { "group:spawn", "fn", "any" },
  { "group:cancel" },
  { "coil.move_on_after", "seconds", "fn", "any", waits = true },

  -- synchronisation
  { "coil.event" },
  { "event:set" },
  { "event:clear" },
  { "event:is_set" },
  { "event:wait", waits = true },
  { "coil.queue", "size" },
  { "queue:put", "item", waits = true },
  { "queue:try_put", "item" },
  { "queue:get", waits = true },
  { "queue:try_get" },
  { "queue:size" },
  { "queue:close" },
  { "queue:is_closed" },
  { "coil.semaphore", "size" },
  { "semaphore:acquire", waits = true },
  { "semaphore:try_acquire" },
  { "semaphore:release" },
  { "semaphore:with", "fn", "any", waits = true },
  { "semaphore:value" },
  { "coil.lock" },
  { "lock:acquire", waits = true },
  { "lock:try_acquire" },
  { "lock:release" },
  { "lock:with", "fn", waits = true },
  { "lock:locked" },

  -- shutdown API (coil.shutdown itself ends a batch: see the fuzzer)
  { "coil.on_shutdown", "fn" },
  { "shutdown_hook:remove" },
  { "coil.stopping" },
  { "coil.on_signal", "signal", "fn" },
  { "signal_handle:close" },
  { "coil.dump" },
  { "coil.on_error", "error_fn" },

  -- plain luv programs inside coil (SPEC §7)
  { "coil.uv.run", "run_mode", waits = true },
  { "coil.uv.stop" },
  { "coil.uv.loop_alive" },
  { "coil.uv.walk", "fn" },

  -- luv through coil.await
  { "coil.await", "luv_fn", "any", "any", waits = true },
  { "coil.await_at", "size", "luv_fn", "any", waits = true },

  -- coil.fs
  { "coil.fs.read_file", "path", waits = true },
  { "coil.fs.write_file", "path", "data", waits = true },
  { "coil.fs.open", "path", "file_mode", "size", waits = true },
  { "coil.fs.stat", "path", waits = true },
  { "coil.fs.mkdir", "path", "size", waits = true },
  { "coil.fs.remove", "path", waits = true },
  { "coil.fs.rename", "path", "path", waits = true },
  { "coil.fs.readdir", "path", waits = true },
  { "file:read", "bytes", waits = true },
  { "file:write", "data", waits = true },
  { "file:seek", "whence", "size", waits = true },
  { "file:close" },
  { "coil.fs.watch", "path", waits = true },

  -- coil.net
  { "coil.net.connect", "host", "port", waits = true },
  { "coil.net.listen", "host", "port0", "handler", "listen_opts", waits = true },
  { "server:address" },
  { "server:close" },
  { "stream:read", waits = true },
  { "stream:read_line", "size", waits = true },
  { "stream:read_exactly", "bytes", waits = true },
  { "stream:write", "data", waits = true },
  { "stream:drain", waits = true },
  { "stream:set_high_water", "size" },
  { "stream:close" },
  { "coil.net.udp", "host", "port0", waits = true },
  { "coil.net.connect_unix", "path", waits = true },
  { "coil.net.listen_fd", "fd", "handler", "listen_opts", waits = true },

  -- coil.io (stdin only: the fuzzer's stdout and stderr are its report)
  { "stdin:read", waits = true },
  { "stdin:read_line", "size", waits = true },
  { "stdin:read_exactly", "bytes", waits = true },

  -- coil.process
  { "coil.process.spawn", "command", "command_args", "process_opts" },
  { "coil.process.run", "command", "command_args", "process_opts", waits = true },
  { "process:wait", waits = true },
  { "process:kill", "signal" },

  -- threads
  { "coil.thread", "thread_fn", "any", waits = true },

  -- systemd (no-ops without NOTIFY_SOCKET / LISTEN_FDS)
  { "coil.service.ready" },
  { "coil.service.status", "data" },
  { "coil.service.notify", "data" },
  { "coil.service.listen_fds" },
  { "coil.service.worker" },
}
