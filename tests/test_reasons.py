"""The Python mirror of the core's enums must match the core exactly."""
import pytest

from kdp import reasons
from kdp._fast import packet


@pytest.mark.parametrize(
    "py_enum, core_enum, prefix",
    [
        (reasons.Reason, packet.Reason, "R_"),
        (reasons.Verdict, packet.Verdict, "V_"),
        (reasons.Stage, packet.Stage, "ST_"),
        (reasons.CtState, packet.CtState, "CT_"),
    ],
)
def test_python_mirror_matches_core_enum(py_enum, core_enum, prefix):
    core = {m.name[len(prefix):]: int(m) for m in core_enum if not m.name.startswith("N_")}
    core.pop("N_REASONS"[2:], None), core.pop("N_STAGES"[3:], None)
    mirror = {m.name: int(m) for m in py_enum}
    assert mirror == core


def test_reason_values_are_dense():
    values = sorted(int(r) for r in reasons.Reason)
    assert values == list(range(len(values)))
