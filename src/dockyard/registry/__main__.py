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
    serve_args.add_argument("--read-only", action="store_true", help="refuse every write (pushes, deletes)")
    serve_args.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM, with its chain)")
    serve_args.add_argument("--tls-key", help="the certificate's private key (PEM)")
    serve_args.add_argument("--auth", choices=("none", "htpasswd", "token"), default="none",
                            help="none, htpasswd (basic auth) or token (bearer tokens from /token)")
    serve_args.add_argument("--htpasswd", help="users (bcrypt entries, htpasswd -B)")
    serve_args.add_argument("--token-realm", help="the token endpoint's URL clients are sent to (default: this server's /token)")
    serve_args.add_argument("--token-key", help="file with the secret that signs tokens (default: a random one)")
    serve_args.add_argument("--anonymous-pull", action="store_true", help="with --auth token: anyone may pull")
    serve_args.add_argument("--proxy-remote", metavar="URL",
                            help="pull-through cache of this registry (http://host:port or https://host)")
    gc_args = commands.add_parser("garbage-collect", help="remove blobs that nothing references")
    gc_args.add_argument("--root", required=True, help="storage directory")
    gc_args.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    args = parser.parse_args(argv)
    if args.command == "garbage-collect":
        from dockyard.registry.storage import RegistryStorage

        removed = RegistryStorage(args.root).garbage_collect(dry_run=args.dry_run)
        for digest in removed:
            print(f"{'would remove' if args.dry_run else 'removed'} {digest}")
        print(f"{len(removed)} blob(s) {'unreferenced' if args.dry_run else 'removed'}")
        return 0
    auth = None
    if args.auth != "none":
        if not args.htpasswd:
            print("dockyard registry: --auth needs --htpasswd", file=sys.stderr)
            return 2
        from dockyard.registry.auth import Authenticator

        key = None
        if args.token_key:
            with open(args.token_key, "rb") as f:
                key = f.read().strip()
        try:
            auth = Authenticator(args.auth, args.htpasswd, token_realm=args.token_realm, key=key,
                                 anonymous_pull=args.anonymous_pull)
        except (OSError, ValueError) as e:
            print(f"dockyard registry: {e}", file=sys.stderr)
            return 2
    upstream = None
    if args.proxy_remote:
        from urllib.parse import urlsplit

        url = urlsplit(args.proxy_remote if "://" in args.proxy_remote else "https://" + args.proxy_remote)
        upstream = {"host": url.netloc, "insecure": url.scheme == "http"}
    if bool(args.tls_cert) != bool(args.tls_key):
        print("dockyard registry: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    host, sep, port_text = args.addr.rpartition(":")
    if not sep or not port_text.isdigit():
        print(f"dockyard registry: --addr {args.addr!r}: expected HOST:PORT", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from aiohttp import web

    from dockyard.registry.server import build_app
    from dockyard.registry.storage import RegistryStorage

    async def serve() -> None:
        runner = web.AppRunner(build_app(RegistryStorage(args.root), read_only=args.read_only, auth=auth, upstream=upstream), access_log=None,
                               handle_signals=False)
        await runner.setup()
        context = None
        if args.tls_cert:
            import ssl

            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(args.tls_cert, args.tls_key)
        site = web.TCPSite(runner, host.strip("[]") or "127.0.0.1", int(port_text), ssl_context=context)
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
