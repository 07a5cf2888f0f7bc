"""`python -m dockyard.registry serve --addr HOST:PORT --root DIR`: serve the distribution API
over HTTP (`dockyard registry serve` runs the same)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dockyard registry", description="Dockyard's OCI distribution registry")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_args = commands.add_parser("serve", help="serve the distribution API")
    serve_args.add_argument("--addr", "--listen", dest="addr", default="127.0.0.1:5000",
                            help="HOST:PORT to listen on (default 127.0.0.1:5000)")
    serve_args.add_argument("--root", required=True, help="storage directory")
    serve_args.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    args = parser.parse_args(argv)
    host, sep, port_text = args.addr.rpartition(":")
    if not sep or not port_text.isdigit():
        print(f"dockyard registry: --addr {args.addr!r}: expected HOST:PORT", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from aiohttp import web

    from dockyard.registry.server import build_app
    from dockyard.registry.storage import RegistryStorage

    async def serve() -> None:
        runner = web.AppRunner(build_app(RegistryStorage(args.root)), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host.strip("[]") or "127.0.0.1", int(port_text))
        await site.start()
        logging.getLogger("dockyard.registry").info("serving on %s", args.addr)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
