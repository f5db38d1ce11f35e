"""W2 switch: one task yields to the loop M times."""
import asyncio
import sys


async def main(m):
    count = 0
    for _ in range(m):
        await asyncio.sleep(0)
        count += 1
    print(f"count {count}")


if __name__ == "__main__":
    if sys.argv[2:] == ["uvloop"]:
        import uvloop
        uvloop.install()
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))
