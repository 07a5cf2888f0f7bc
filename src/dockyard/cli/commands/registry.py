"""`dockyard registry serve|garbage-collect`: the registry server's own command line
(`python -m dockyard.registry`), run in this process. It needs no daemon; aiohttp and the
server are imported only here, when the command runs."""

from __future__ import annotations

from dockyard.cli.client import Client


def _registry_main(command: str, argv: list[str]) -> int:
    from dockyard.registry.__main__ import main

    return main([command, *argv])


def cmd_serve(client: Client, argv: list[str]) -> int:
    return _registry_main("serve", argv)


def cmd_garbage_collect(client: Client, argv: list[str]) -> int:
    return _registry_main("garbage-collect", argv)


cmd_serve.own_help = True  # type: ignore[attr-defined]  # argparse prints the real usage
cmd_garbage_collect.own_help = True  # type: ignore[attr-defined]
