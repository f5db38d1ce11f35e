"""W6 churn: N short tasks started over time, at most 1000 alive at once
(a semaphore); each sleeps 0 and returns. A set holds the running tasks
(asyncio keeps only weak references) and forgets each one as it ends."""
import asyncio
import sys

WINDOW = 1000


async def main(n):
    slots = asyncio.Semaphore(WINDOW)
    running = set()
    total = [0, 0]

    async def task(i):
        await asyncio.sleep(0)
        total[0] += i
        total[1] += 1
        slots.release()

    for i in range(n):
        await slots.acquire()
        t = asyncio.create_task(task(i))
        running.add(t)
        t.add_done_callback(running.discard)
    for _ in range(WINDOW):
        await slots.acquire()
    print(f"churned {total[1]} sum {total[0]}")


if __name__ == "__main__":
    if sys.argv[2:] == ["uvloop"]:
        import uvloop
        uvloop.install()
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))
