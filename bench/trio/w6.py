"""W6 churn: N short tasks started over time, at most 1000 alive at once
(a semaphore); each sleeps 0 and returns, in one nursery."""
import sys

import trio

WINDOW = 1000


async def main(n):
    slots = trio.Semaphore(WINDOW)
    total = [0, 0]

    async def task(i):
        await trio.sleep(0)
        total[0] += i
        total[1] += 1
        slots.release()

    async with trio.open_nursery() as nursery:
        for i in range(n):
            await slots.acquire()
            nursery.start_soon(task, i)
    print(f"churned {total[1]} sum {total[0]}")


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
