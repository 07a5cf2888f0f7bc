import pytest

from dockyard.errors import InvalidSpec
from dockyard.security import capabilities as caps
from dockyard.security.capabilities import CAP_NAMES, CapabilitySets


def test_cap_names_cover_0_to_40_without_gaps():
    assert sorted(CAP_NAMES.values()) == list(range(41))
    assert CAP_NAMES["CAP_CHOWN"] == 0
    assert CAP_NAMES["CAP_SYS_ADMIN"] == 21
    assert CAP_NAMES["CAP_CHECKPOINT_RESTORE"] == 40
    assert all(name.startswith("CAP_") for name in CAP_NAMES)


def test_last_cap_matches_proc_and_the_prctl_probe():
    with open("/proc/sys/kernel/cap_last_cap") as f:
        expected = int(f.read())
    assert caps.last_cap() == expected
    assert caps._probe_last_cap() == expected


def test_parse_caps_names_to_numbers():
    assert caps.parse_caps(["CAP_CHOWN", "CAP_NET_RAW", "CAP_CHOWN"]) == {0, 13}
    assert caps.parse_caps([]) == set()


@pytest.mark.parametrize("name", ["CAP_NOT_A_THING", "chown", "cap_chown", "", 7])
def test_parse_caps_rejects_unknown_names(name):
    with pytest.raises(InvalidSpec, match="unknown capability"):
        caps.parse_caps([name])


def test_parse_caps_rejects_a_string_instead_of_a_list():
    with pytest.raises(InvalidSpec, match="must be a list"):
        caps.parse_caps("CAP_CHOWN")  # type: ignore[arg-type]


def test_parse_caps_drops_capabilities_the_kernel_lacks(monkeypatch):
    monkeypatch.setattr(caps, "_last_cap", 37)
    assert caps.parse_caps(["CAP_AUDIT_READ", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"]) == {37}


def test_from_spec_none_is_all_empty():
    sets = CapabilitySets.from_spec(None)
    assert sets == CapabilitySets(set(), set(), set(), set(), set())


def test_from_spec_reads_every_set_and_missing_sets_are_empty():
    sets = CapabilitySets.from_spec(
        {
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
            "permitted": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
            "ambient": ["CAP_NET_BIND_SERVICE"],
            "inheritable": ["CAP_NET_BIND_SERVICE"],
        }
    )
    assert sets.bounding == {0, 5, 10}
    assert sets.effective == {0, 10}
    assert sets.permitted == {0, 10}
    assert sets.inheritable == {10}
    assert sets.ambient == {10}
    assert CapabilitySets.from_spec({"bounding": ["CAP_KILL"]}) == CapabilitySets(bounding={5})


def test_from_spec_names_the_set_with_the_bad_name():
    with pytest.raises(InvalidSpec, match=r"process\.capabilities\.permitted: unknown capability 'CAP_BOGUS'"):
        CapabilitySets.from_spec({"permitted": ["CAP_BOGUS"]})


def test_from_spec_rejects_a_non_object():
    with pytest.raises(InvalidSpec, match="must be an object"):
        CapabilitySets.from_spec(["CAP_CHOWN"])  # type: ignore[arg-type]


def test_effective_must_be_permitted():
    with pytest.raises(InvalidSpec, match=r"effective \['CAP_KILL'\] not in the permitted set"):
        CapabilitySets.from_spec({"effective": ["CAP_CHOWN", "CAP_KILL"], "permitted": ["CAP_CHOWN"]})


def test_ambient_must_be_permitted_and_inheritable():
    with pytest.raises(InvalidSpec, match="ambient"):
        CapabilitySets.from_spec({"ambient": ["CAP_KILL"], "permitted": ["CAP_KILL"]})


def test_masks_and_names():
    assert caps.mask_of({0, 10, 40}) == (1 | 1 << 10 | 1 << 40)
    assert caps.caps_of(1 | 1 << 10 | 1 << 40) == {0, 10, 40}
    assert caps.names_of({10, 0}) == ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]


def test_current_reads_the_five_masks():
    masks = caps.current()
    assert set(masks) == {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}
    assert masks["CapEff"] & ~masks["CapPrm"] == 0
