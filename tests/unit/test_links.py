"""Legacy links: parsing, the stored form, the environment and /etc/hosts line dockerd gives."""

from __future__ import annotations

import pytest

from dockyard.errors import InvalidArgument
from dockyard.services import links


def test_parse_accepts_docker_forms() -> None:
    assert links.parse("db") == ("db", "db")
    assert links.parse("db:database") == ("db", "database")
    assert links.parse("/db:/web/database") == ("db", "database")
    for bad in ("", ":x", "db:", "a b:c", "db:a:b", 3):
        with pytest.raises(InvalidArgument):
            links.parse(bad)
    assert links.stored("db", "web", "database") == "/db:/web/database"


def test_env_matches_dockerd() -> None:
    env = links.env("web", "my-db", "172.17.0.2", {"5432/tcp": {}, "53/udp": {}},
                    ["FOO=1", "PATH=/bin", "HOME=/root", "EMPTY=", "junk"])
    assert env == [
        "MY_DB_PORT=udp://172.17.0.2:53",
        "MY_DB_PORT_53_UDP=udp://172.17.0.2:53", "MY_DB_PORT_53_UDP_ADDR=172.17.0.2",
        "MY_DB_PORT_53_UDP_PORT=53", "MY_DB_PORT_53_UDP_PROTO=udp",
        "MY_DB_PORT_5432_TCP=tcp://172.17.0.2:5432", "MY_DB_PORT_5432_TCP_ADDR=172.17.0.2",
        "MY_DB_PORT_5432_TCP_PORT=5432", "MY_DB_PORT_5432_TCP_PROTO=tcp",
        "MY_DB_NAME=/web/my-db", "MY_DB_ENV_FOO=1", "MY_DB_ENV_EMPTY=",
    ]
    assert links.env("web", "db", "10.0.0.2", None, None) == ["DB_NAME=/web/db"]


def test_hosts_line_and_dns_aliases() -> None:
    assert links.hosts_line("172.17.0.2", "database", "a1b2c3", "db") == "172.17.0.2\tdatabase a1b2c3 db"
    assert links.hosts_line("172.17.0.2", "db", "a1b2c3", "db") == "172.17.0.2\tdb a1b2c3"
    assert links.aliased(["upstream:bar", "other", "bad link"], "bar") == {"upstream"}
    assert links.aliased(["upstream:bar", "other"], "other") == {"other"}
    assert links.aliased(None, "bar") == set()


def test_port_runs_get_start_and_end_variables_as_dockerd_20_10_gives_them() -> None:
    """What dockerd 20.10.24 put in a linking container's environment (`env`, in order) for a
    target with --expose 8000-8002 --expose 9000 --expose 9001-9002/udp --expose 53/udp
    --expose 53/tcp. A run of consecutive numbers may mix protocols there."""
    seen_in_docker = """\
DB_PORT=tcp://172.17.0.2:53
DB_PORT_8000_TCP_START=tcp://172.17.0.2:8000
DB_PORT_8000_TCP_ADDR=172.17.0.2
DB_PORT_8000_TCP_PROTO=tcp
DB_PORT_8000_TCP_PORT_START=8000
DB_PORT_8000_TCP_END=tcp://172.17.0.2:8002
DB_PORT_8000_TCP_PORT_END=8002
DB_PORT_9000_TCP_START=tcp://172.17.0.2:9000
DB_PORT_9000_TCP_ADDR=172.17.0.2
DB_PORT_9000_TCP_PROTO=tcp
DB_PORT_9000_TCP_PORT_START=9000
DB_PORT_9000_UDP_END=udp://172.17.0.2:9002
DB_PORT_9000_UDP_PORT_END=9002
DB_PORT_53_TCP=tcp://172.17.0.2:53
DB_PORT_53_TCP_ADDR=172.17.0.2
DB_PORT_53_TCP_PORT=53
DB_PORT_53_TCP_PROTO=tcp
DB_PORT_53_UDP=udp://172.17.0.2:53
DB_PORT_53_UDP_ADDR=172.17.0.2
DB_PORT_53_UDP_PORT=53
DB_PORT_53_UDP_PROTO=udp
DB_PORT_8000_TCP=tcp://172.17.0.2:8000
DB_PORT_8000_TCP_PORT=8000
DB_PORT_8001_TCP=tcp://172.17.0.2:8001
DB_PORT_8001_TCP_ADDR=172.17.0.2
DB_PORT_8001_TCP_PORT=8001
DB_PORT_8001_TCP_PROTO=tcp
DB_PORT_8002_TCP=tcp://172.17.0.2:8002
DB_PORT_8002_TCP_ADDR=172.17.0.2
DB_PORT_8002_TCP_PORT=8002
DB_PORT_8002_TCP_PROTO=tcp
DB_PORT_9000_TCP=tcp://172.17.0.2:9000
DB_PORT_9000_TCP_PORT=9000
DB_PORT_9001_UDP=udp://172.17.0.2:9001
DB_PORT_9001_UDP_ADDR=172.17.0.2
DB_PORT_9001_UDP_PORT=9001
DB_PORT_9001_UDP_PROTO=udp
DB_PORT_9002_UDP=udp://172.17.0.2:9002
DB_PORT_9002_UDP_ADDR=172.17.0.2
DB_PORT_9002_UDP_PORT=9002
DB_PORT_9002_UDP_PROTO=udp
DB_NAME=/web/db""".splitlines()
    exposed = {p: {} for p in ("8000/tcp", "8001/tcp", "8002/tcp", "9000/tcp", "9001/udp", "9002/udp", "53/udp",
                               "53/tcp")}
    merged: dict[str, str] = {}  # as a container's environment keeps a repeated name: first place, last value
    for item in links.env("web", "db", "172.17.0.2", exposed, None):
        name, _, value = item.partition("=")
        merged[name] = value
    assert [f"{k}={v}" for k, v in merged.items()] == seen_in_docker
