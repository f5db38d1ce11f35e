"""W3 timers: N tasks, task i sleeps (i mod 1000) ms; gather them all."""
import asyncio
import sys


async def task(i):
    await asyncio.sleep(i % 1000 / 1000)
    return True


async def main(n):
    results = await asyncio.gather(*(task(i) for i in range(n)))
    print(f"count {len(results)}")


if __name__ == "__main__":
    if sys.argv[2:] == ["uvloop"]:
        import uvloop
        uvloop.install()
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
