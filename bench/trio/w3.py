"""W3 timers: N tasks, task i sleeps (i mod 1000) ms; wait for them all."""
import sys

import trio


async def main(n):
    count = 0

    async def task(i):
        nonlocal count
        await trio.sleep(i % 1000 / 1000)
        count += 1

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(task, i)
    print(f"count {count}")


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
