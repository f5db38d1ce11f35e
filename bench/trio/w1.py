"""W1 spawn: N tasks; task i yields to the loop once and returns i.
Trio tasks have no return value: the nursery's tasks store theirs."""
import sys

import trio


async def task(i, results):
    await trio.sleep(0)
    results[i] = i


async def main(n):
    results = [None] * n
    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(task, i, results)
    print(f"sum {sum(results)}")


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
