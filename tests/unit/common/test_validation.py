"""Names, free text, uuids and enums."""

import pytest
from berth.client.errors import InvalidArgument
from berth.v1 import host_pb2

from services.common import validation


@pytest.mark.parametrize("value", ["compute-1", "c" * 255, "höst.example", "rack 1"])
def test_good_names_pass(value):
    assert validation.name("host", value) == value


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "empty"),
        ("c" * 256, "at most 255"),
        ("a\tb", "control"),
        ("a\u200bb", "control"),
        (" a", "whitespace"),
    ],
)
def test_bad_names_name_the_field(value, says):
    with pytest.raises(InvalidArgument) as err:
        validation.name("host", value)
    assert err.value.violations[0].field == "host" and says in err.value.violations[0].description


def test_an_optional_name_may_be_empty():
    assert validation.name("zone", "", required=False) == ""


def test_unknown_and_unspecified_enum_values_are_refused():
    assert validation.enum("action", host_pb2.POWER_ACTION_REBOOT, host_pb2.PowerAction) == 3
    with pytest.raises(InvalidArgument, match="not a known PowerAction"):
        validation.enum("action", 99, host_pb2.PowerAction)
    with pytest.raises(InvalidArgument, match="must be set"):
        validation.enum("action", 0, host_pb2.PowerAction)
    assert validation.enum("status", 0, host_pb2.HostStatus, allow_unspecified=True) == 0


def test_uuids_are_normalised_or_refused():
    assert (
        validation.uuid("u", "7A1B7A56-59D0-4F38-9C1E-1B2FB4D9A0A1")
        == "7a1b7a56-59d0-4f38-9c1e-1b2fb4d9a0a1"
    )
    with pytest.raises(InvalidArgument):
        validation.uuid("u", "nope")
