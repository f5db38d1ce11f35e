"""W4 shutdown: N tasks sleep 3600 s; on Ctrl+C asyncio.run cancels the main
task, gather cancels the rest, and each one's cleanup yields once, then
counts itself."""
import asyncio
import contextlib
import sys

cleaned = 0


async def sleeper():
    global cleaned
    try:
        await asyncio.sleep(3600)
    finally:
        await asyncio.sleep(0)
        cleaned += 1


async def main(n):
    tasks = [asyncio.create_task(sleeper()) for _ in range(n)]
    await asyncio.sleep(0)
    print("READY", flush=True)
    try:
        await asyncio.gather(*tasks)
    finally:
        print(f"cleaned {cleaned}", flush=True)


if __name__ == "__main__":
    if sys.argv[2:] == ["uvloop"]:
        import uvloop
        uvloop.install()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
