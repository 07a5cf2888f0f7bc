"""The nftables document dockyard.network.firewall computes from the model (no nft run here)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dockyard.errors import InvalidArgument
from dockyard.network import firewall
from dockyard.network.firewall import BridgeRule, PortRule, ruleset


def _commands(doc: dict[str, Any]) -> list[dict[str, Any]]:
    commands: list[dict[str, Any]] = doc["nftables"]
    return commands


def _rules(doc: dict[str, Any]) -> dict[str, list[list[dict[str, Any]]]]:
    out: dict[str, list[list[dict[str, Any]]]] = {}
    for command in _commands(doc):
        rule = command.get("add", {}).get("rule")
        if rule:
            assert (rule["family"], rule["table"]) == ("ip", "dockyard")
            out.setdefault(rule["chain"], []).append(rule["expr"])
    return out


def test_the_batch_replaces_only_our_table() -> None:
    doc = ruleset([], [])
    json.dumps(doc)
    table = {"table": {"family": "ip", "name": "dockyard"}}
    assert _commands(doc)[:3] == [{"add": table}, {"delete": table}, {"add": table}]
    for command in _commands(doc):
        (verb, obj), = command.items()
        (kind, body), = obj.items()
        assert body.get("table", body.get("name")) == "dockyard" and body["family"] == "ip"
        assert verb in ("add", "delete") and kind in ("table", "chain", "rule")
    hooks = {c["add"]["chain"]["name"]: c["add"]["chain"].get("hook") for c in _commands(doc) if "chain" in c.get("add", {})}
    assert hooks == {"postrouting": "postrouting", "forward": "forward", "ports": None,
                     "prerouting": "prerouting", "output": "output"}


def test_masquerade_isolation_and_ports() -> None:
    nets = [BridgeRule("dy-a", "10.1.0.0/16"), BridgeRule("dy-b", "10.2.0.0/16"), BridgeRule("dy-c", "10.3.0.0/16")]
    ports = [PortRule("tcp", "", 8080, "10.1.0.2", 80), PortRule("udp", "192.0.2.1", 53, "10.2.0.2", 5353)]
    rules = _rules(ruleset(nets, ports))
    masq = rules["postrouting"][0]
    assert masq[0]["match"]["right"] == {"prefix": {"addr": "10.1.0.0", "len": 16}}
    assert masq[1]["match"] == {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "dy-a"}
    assert masq[2] == {"masquerade": None}
    assert len(rules["postrouting"]) == 6                 # outbound and hairpin, per network
    forward = rules["forward"]
    assert forward[0][-1] == {"accept": None}             # established first
    isolation = {r[0]["match"]["right"]: r[1]["match"]["right"]["set"] for r in forward[1:]}
    assert isolation == {"dy-a": ["dy-b", "dy-c"], "dy-b": ["dy-a", "dy-c"], "dy-c": ["dy-a", "dy-b"]}
    tcp, udp = rules["ports"]
    assert tcp == [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}},
                   {"dnat": {"addr": "10.1.0.2", "port": 80}}]
    assert udp[0]["match"]["right"] == "192.0.2.1" and udp[-1] == {"dnat": {"addr": "10.2.0.2", "port": 5353}}
    assert rules["prerouting"] == [[firewall._FIB_LOCAL, {"jump": {"target": "ports"}}]]
    assert rules["output"][0][0]["match"]["op"] == "!="   # never loopback


def test_internal_and_unmasqueraded_networks() -> None:
    rules = _rules(ruleset([BridgeRule("dy-i", "10.9.0.0/24", internal=True),
                            BridgeRule("dy-n", "10.8.0.0/24", masquerade=False)], []))
    assert len(rules["postrouting"]) == 1                 # only dy-n's hairpin rule
    assert rules["postrouting"][0][1]["match"]["right"] == "dy-n"
    drops = [r for r in rules["forward"] if r[-1] == {"drop": None}]
    assert len(drops) == 4                                # isolation both ways, internal in and out


@pytest.mark.parametrize(("nets", "ports", "message"), [
    ([BridgeRule('br" accept', "10.0.0.0/8")], [], "invalid bridge name"),
    ([BridgeRule("a-very-long-bridge-name", "10.0.0.0/8")], [], "invalid bridge name"),
    ([BridgeRule("br", "10.0.0.1/8")], [], "invalid subnet"),
    ([BridgeRule("br", "fd00::/64")], [], "invalid subnet"),
    ([BridgeRule("br", "10.0.0.0/8"), BridgeRule("br", "10.0.0.0/8")], [], "twice"),
    ([], [PortRule("icmp", "", 1, "10.0.0.2", 1)], "invalid protocol"),
    ([], [PortRule("tcp", "", 0, "10.0.0.2", 1)], "invalid port"),
    ([], [PortRule("tcp", "", 80, "10.0.0.2", 70000)], "invalid port"),
    ([], [PortRule("tcp", "localhost", 80, "10.0.0.2", 80)], "invalid host"),
    ([], [PortRule("tcp", "", 80, "fd00::2", 80)], "invalid container"),
])
def test_bad_models_are_refused(nets: list[BridgeRule], ports: list[PortRule], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        ruleset(nets, ports)


def test_commands_run_through_nsenter_for_another_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(firewall.shutil, "which", lambda name: f"/usr/sbin/{name}")
    assert firewall.Firewall()._argv("-j", "list") == ["/usr/sbin/nft", "-j", "list"]
    assert firewall.Firewall("/run/netns/x")._argv("-f", "-") == \
        ["/usr/sbin/nsenter", "--net=/run/netns/x", "--", "/usr/sbin/nft", "-f", "-"]
