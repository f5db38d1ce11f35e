"""W5 TCP echo: trio.serve_tcp, a task per connection (Trio sets
TCP_NODELAY itself). Prints READY <port>; runs until killed."""
import sys

import trio


async def echo(stream):
    try:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                break
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass


async def main(port):
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1", backlog=511)
    print(f"READY {listeners[0].socket.getsockname()[1]}", flush=True)
    await trio.serve_listeners(echo, listeners)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 0)
