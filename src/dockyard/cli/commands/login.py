"""`dockyard login` and `dockyard logout`: check credentials through the daemon (POST /auth) and
keep them in the client's config file (dockyard.cli.config), as the docker CLI does."""

from __future__ import annotations

import sys

from dockyard.cli import config
from dockyard.cli.args import F, Spec, UsageError
from dockyard.cli.client import Client, CliError, DaemonError

NO_TTY = "Error: Cannot perform an interactive login from a non TTY device"


def _ask_username(default: str) -> str:
    if not sys.stdin.isatty():
        raise CliError(NO_TTY, 1)
    prompt = f"Username ({default}): " if default else "Username: "
    sys.stderr.write(prompt)
    sys.stderr.flush()
    answer = sys.stdin.readline().strip()
    return answer or default


def _ask_password() -> str:
    import getpass

    if not sys.stdin.isatty():
        raise CliError(NO_TTY, 1)
    return getpass.getpass("Password: ")


def _password_from_stdin() -> str:
    password = sys.stdin.read()
    return password.rstrip("\n").rstrip("\r")


def cmd_login(client: Client, argv: list[str]) -> int:
    p = Spec(F("-u", "--username", value=True), F("-p", "--password", value=True),
             F("--password-stdin")).parse(argv)
    if len(p.positionals) > 1:
        raise UsageError('"login" requires at most 1 argument.')
    key = config.server_key(p.positionals[0] if p.positionals else config.HUB_KEY)
    if p["password"] is not None and p["password_stdin"]:
        raise UsageError("--password and --password-stdin are mutually exclusive")
    username = p["username"] or ""
    if p["password_stdin"]:
        if not username:
            raise CliError("Must provide --username with --password-stdin", 1)
        password = _password_from_stdin()
    else:
        if not username:
            saved = config.credentials(key) or {}
            username = _ask_username(saved.get("username", ""))
        if p["password"] is not None:
            print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=sys.stderr)
            password = p["password"]
        else:
            password = _ask_password()
    if not username:
        raise CliError("Error: Non-null Username Required", 1)
    if not password:
        raise CliError("Error: Non-null Password Required", 1)
    try:
        answer = client.post("/auth", {"username": username, "password": password, "serveraddress": key})
    except DaemonError as e:
        raise CliError(str(e), 1) from None
    token = str((answer or {}).get("IdentityToken") or "") if isinstance(answer, dict) else ""
    config.store_credentials(key, username, password, token)
    print(f"WARNING! Your password will be stored unencrypted in {config.config_path()}.", file=sys.stderr)
    print("Login Succeeded")
    return 0


def cmd_logout(client: Client, argv: list[str]) -> int:
    p = Spec().parse(argv)
    if len(p.positionals) > 1:
        raise UsageError('"logout" requires at most 1 argument.')
    key = config.server_key(p.positionals[0] if p.positionals else config.HUB_KEY)
    if not config.remove_credentials(key):
        print(f"Not logged in to {key}")
        return 0
    print(f"Removing login credentials for {key}")
    return 0
