"""W1 spawn: N tasks; task i yields to the loop once and returns i."""
import asyncio
import sys


async def task(i):
    await asyncio.sleep(0)
    return i


async def main(n):
    results = await asyncio.gather(*(task(i) for i in range(n)))
    print(f"sum {sum(results)}")


if __name__ == "__main__":
    if sys.argv[2:] == ["uvloop"]:
        import uvloop
        uvloop.install()
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
