"""W4 shutdown: N tasks sleep 3600 s; Ctrl+C raises KeyboardInterrupt in the
main task, the nursery cancels its children, and each one's cleanup yields
once (shielded, as Trio requires for awaiting in cleanup), then counts
itself."""
import contextlib
import sys

import trio

cleaned = 0


async def sleeper():
    global cleaned
    try:
        await trio.sleep(3600)
    finally:
        with trio.CancelScope(shield=True):
            await trio.sleep(0)
        cleaned += 1


async def main(n):
    try:
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(sleeper)
            await trio.sleep(0)
            print("READY", flush=True)
    finally:
        print(f"cleaned {cleaned}", flush=True)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
