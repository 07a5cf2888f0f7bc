"""What each metadata instruction does to the image config, as Docker's builder does it.

A `StageState` is the image being built by one stage: its container config (Docker's
capitalised keys), author, declared build args. The functions here change it for the
instructions that make no layer (ENV, LABEL, CMD, ...) and return the history comment Docker
records for them ("ENV a=b"). Variables are expanded here, where Docker expands them; RUN, CMD
and ENTRYPOINT in shell form are left to the shell.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dockyard.builder.dockerfile import Instruction
from dockyard.builder.shell import Lexer
from dockyard.errors import InvalidArgument

DEFAULT_SHELL = ["/bin/sh", "-c"]

# usable without an ARG line, and left out of the image history (Docker's list)
PREDEFINED_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
                   "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")


@dataclass
class StageState:
    index: int
    name: str | None
    image_id: str | None                       # None: FROM scratch and nothing committed yet
    config: dict[str, Any] = field(default_factory=dict)
    author: str = ""
    args: dict[str, str | None] = field(default_factory=dict)   # declared in this stage
    cmd_set: bool = False

    @property
    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or DEFAULT_SHELL)

    @property
    def env_list(self) -> list[str]:
        return list(self.config.get("Env") or [])

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.env_list:
            key, _, value = item.partition("=")
            out[key] = value
        return out

    def expansion_env(self, build_args: dict[str, str]) -> dict[str, str]:
        """What $VAR sees: declared args (with their values), then ENV on top (ENV wins)."""
        out = {k: v for k, v in self.arg_values(build_args).items()}
        out.update(self.env())
        return out

    def arg_values(self, build_args: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, default in self.args.items():
            if name in build_args:
                out[name] = build_args[name]
            elif default is not None:
                out[name] = default
        for name in PREDEFINED_ARGS:
            if name in build_args and name not in out:
                out[name] = build_args[name]
        return out

    def set_env(self, key: str, value: str) -> None:
        """Replace in place (keeping the order Docker keeps), else append."""
        env = self.env_list
        for i, item in enumerate(env):
            if item.partition("=")[0] == key:
                env[i] = f"{key}={value}"
                break
        else:
            env.append(f"{key}={value}")
        self.config["Env"] = env


def _words(lexer: Lexer, env: dict[str, str], values: list[str]) -> list[str]:
    return [lexer.process_word(v, env) for v in values]


def env(state: StageState, ins: Instruction, lexer: Lexer, build_args: dict[str, str]) -> str:
    scope = state.expansion_env(build_args)
    parts = []
    for raw_key, raw_value in ins.pairs:
        key = lexer.process_word(raw_key, scope)
        value = lexer.process_word(raw_value or "", scope)
        if not key:
            raise InvalidArgument("ENV names can not be blank")
        state.set_env(key, value)
        parts.append(f"{key}={value}")
    return "ENV " + " ".join(parts)


def label(state: StageState, ins: Instruction, lexer: Lexer, build_args: dict[str, str]) -> str:
    scope = state.expansion_env(build_args)
    labels = dict(state.config.get("Labels") or {})
    parts = []
    for raw_key, raw_value in ins.pairs:
        key = lexer.process_word(raw_key, scope)
        value = lexer.process_word(raw_value or "", scope)
        if not key:
            raise InvalidArgument("LABEL names can not be blank")
        labels[key] = value
        parts.append(f"{json.dumps(key)}={json.dumps(value)}")
    state.config["Labels"] = labels
    return "LABEL " + " ".join(parts)


def expose(state: StageState, ins: Instruction, lexer: Lexer, build_args: dict[str, str]) -> str:
    scope = state.expansion_env(build_args)
    ports = dict(state.config.get("ExposedPorts") or {})
    added = []
    for word in _words(lexer, scope, ins.args):
        for port in expand_ports(word):
            ports[port] = {}
            added.append(port)
    state.config["ExposedPorts"] = ports
    return "EXPOSE " + " ".join(sorted(set(added)))


def expand_ports(word: str) -> list[str]:
    port, _, proto = word.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid proto: {proto}")
    if ":" in port:
        port = port.rsplit(":", 1)[1]  # EXPOSE ip:host:container: Docker keeps the container port
    lo, _, hi = port.partition("-")
    if not lo.isdigit() or (hi and not hi.isdigit()) or int(lo) > 65535 or (hi and int(hi) > 65535):
        raise InvalidArgument(f"invalid containerPort: {port}")
    if hi and int(hi) < int(lo):
        raise InvalidArgument(f"invalid range specified for container port: {port}")
    return [f"{p}/{proto}" for p in range(int(lo), int(hi or lo) + 1)]


def volume(state: StageState, ins: Instruction, lexer: Lexer, build_args: dict[str, str]) -> str:
    scope = state.expansion_env(build_args)
    volumes = dict(state.config.get("Volumes") or {})
    values = _words(lexer, scope, ins.args)
    for v in values:
        v = v.strip()
        if not v:
            raise InvalidArgument("VOLUME specified can not be an empty string")
        volumes[v] = {}
    state.config["Volumes"] = volumes
    return "VOLUME " + json.dumps(values)


def workdir(state: StageState, ins: Instruction, lexer: Lexer, build_args: dict[str, str]) -> str:
    path = lexer.process_word(ins.args[0], state.expansion_env(build_args))
    state.config["WorkingDir"] = resolve_workdir(state.config.get("WorkingDir") or "/", path)
    return "WORKDIR " + state.config["WorkingDir"]


def resolve_workdir(current: str, path: str) -> str:
    if not path:
        raise InvalidArgument("WORKDIR requires a path")
    return posixpath.normpath(posixpath.join(current or "/", path))


def user(state: StageState, ins: Instruction, lexer: Lexer, build_args: dict[str, str]) -> str:
    state.config["User"] = lexer.process_word(ins.args[0], state.expansion_env(build_args))
    return "USER " + state.config["User"]


_SIGNAL = re.compile(r"^(SIG)?[A-Z0-9+-]+$|^[0-9]+$")


def stopsignal(state: StageState, ins: Instruction, lexer: Lexer, build_args: dict[str, str]) -> str:
    value = lexer.process_word(ins.args[0], state.expansion_env(build_args))
    if not _SIGNAL.match(value.upper()):
        raise InvalidArgument(f"Invalid signal: {value}")
    state.config["StopSignal"] = value
    return "STOPSIGNAL " + value


def command_line(state: StageState, ins: Instruction) -> list[str]:
    """RUN/CMD/ENTRYPOINT words: the JSON array as given, or the shell form through SHELL."""
    if ins.json_form:
        return list(ins.args)
    return state.shell + [ins.args[0]] if ins.args else state.shell


def cmd(state: StageState, ins: Instruction, lexer: Lexer, build_args: dict[str, str]) -> str:
    state.config["Cmd"] = command_line(state, ins)
    state.cmd_set = True
    return "CMD " + json.dumps(state.config["Cmd"])


def entrypoint(state: StageState, ins: Instruction, lexer: Lexer, build_args: dict[str, str]) -> str:
    value = command_line(state, ins)
    state.config["Entrypoint"] = value if (ins.json_form or ins.args) else None
    if not state.cmd_set:
        state.config["Cmd"] = None  # an ENTRYPOINT resets the base image's CMD, as Docker does
    return "ENTRYPOINT " + json.dumps(value)


def shell(state: StageState, ins: Instruction, lexer: Lexer, build_args: dict[str, str]) -> str:
    if not ins.json_form or not ins.args:
        raise InvalidArgument("SHELL requires the arguments to be in JSON form")
    state.config["Shell"] = list(ins.args)
    return "SHELL " + json.dumps(ins.args)


def maintainer(state: StageState, ins: Instruction, lexer: Lexer, build_args: dict[str, str]) -> str:
    state.author = lexer.process_word(ins.args[0], state.expansion_env(build_args))
    return "MAINTAINER " + state.author


def onbuild(state: StageState, ins: Instruction, lexer: Lexer, build_args: dict[str, str]) -> str:
    trigger = ins.args[0].strip()
    keyword, _, rest = trigger.partition(" ")
    text = f"{keyword.upper()} {rest.strip()}".strip()
    state.config["OnBuild"] = [*(state.config.get("OnBuild") or []), text]
    return "ONBUILD " + text


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
          "h": 3_600_000_000_000}


def parse_duration(text: str, flag: str) -> int:
    """A Go duration ("30s", "1m30s", "500ms") in nanoseconds."""
    if text in ("0", ""):
        return 0
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION.match(text, pos)
        if m is None:
            raise InvalidArgument(f"invalid duration for --{flag}: {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return int(total)


def healthcheck(state: StageState, ins: Instruction, lexer: Lexer, build_args: dict[str, str]) -> str:
    kind = ins.args[0].upper() if ins.args else ""
    if kind == "NONE":
        if ins.flags:
            raise InvalidArgument("HEALTHCHECK NONE takes no flags")
        state.config["Healthcheck"] = {"Test": ["NONE"]}
        return "HEALTHCHECK NONE"
    if kind != "CMD":
        raise InvalidArgument(f"Unknown type {kind!r} in HEALTHCHECK (try CMD)")
    command = ins.args[1:]
    test = ["CMD", *command] if ins.json_form else ["CMD-SHELL", command[0] if command else ""]
    check: dict[str, Any] = {"Test": test}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
                      ("start-interval", "StartInterval")):
        value = ins.flag(flag)
        if value is not None:
            ns = parse_duration(value, flag)
            if ns and ns < 1_000_000:
                raise InvalidArgument(f"Interval \"{flag}\" cannot be less than 1ms")
            if ns:
                check[key] = ns
    retries = ins.flag("retries")
    if retries is not None:
        if not retries.isdigit() or int(retries) < 1:
            raise InvalidArgument("--retries must be at least 1")
        check["Retries"] = int(retries)
    state.config["Healthcheck"] = check
    return "HEALTHCHECK " + json.dumps(check)


METADATA: dict[str, Callable[[StageState, Instruction, Lexer, dict[str, str]], str]] = {
    "ENV": env, "LABEL": label, "EXPOSE": expose, "VOLUME": volume, "WORKDIR": workdir, "USER": user,
    "STOPSIGNAL": stopsignal, "CMD": cmd, "ENTRYPOINT": entrypoint, "SHELL": shell, "MAINTAINER": maintainer,
    "ONBUILD": onbuild, "HEALTHCHECK": healthcheck,
}
