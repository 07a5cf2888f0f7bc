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
