"""--change instructions for import and commit."""

from __future__ import annotations

import pytest

from dockyard.errors import InvalidArgument
from dockyard.image.changes import apply_changes


def test_each_instruction() -> None:
    cfg = apply_changes({"Env": ["PATH=/bin", "A=old"], "WorkingDir": "/srv"}, [
        'CMD ["sh", "-c", "echo hi"]',
        "ENTRYPOINT [\"/init\"]",
        'ENV A=new B="two words"',
        "ENV LEGACY value with spaces",
        "EXPOSE 80 53/udp 8000-8001",
        'LABEL maintainer="me" version=1',
        "USER nobody",
        'VOLUME ["/data"]',
        "VOLUME /cache /logs",
        "WORKDIR app",
        "STOPSIGNAL SIGINT",
        "ONBUILD RUN make",
    ])
    assert cfg["Cmd"] == ["sh", "-c", "echo hi"] and cfg["Entrypoint"] == ["/init"]
    assert cfg["Env"] == ["PATH=/bin", "A=new", "B=two words", "LEGACY=value with spaces"]
    assert set(cfg["ExposedPorts"]) == {"80/tcp", "53/udp", "8000/tcp", "8001/tcp"}
    assert cfg["Labels"] == {"maintainer": "me", "version": "1"}
    assert cfg["User"] == "nobody" and cfg["StopSignal"] == "SIGINT" and cfg["OnBuild"] == ["RUN make"]
    assert set(cfg["Volumes"]) == {"/data", "/cache", "/logs"}
    assert cfg["WorkingDir"] == "/srv/app"


def test_shell_form() -> None:
    assert apply_changes({}, ["CMD echo $HOME"])["Cmd"] == ["/bin/sh", "-c", "echo $HOME"]


def test_errors() -> None:
    with pytest.raises(InvalidArgument, match="RUN is not a valid change command"):
        apply_changes({}, ["RUN make"])
    with pytest.raises(InvalidArgument, match="invalid port"):
        apply_changes({}, ["EXPOSE http"])
    with pytest.raises(InvalidArgument, match="KEY=VALUE"):
        apply_changes({}, ["LABEL a=1 b"])
