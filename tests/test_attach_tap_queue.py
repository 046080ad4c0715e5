"""TapPort.set_up asks the kernel for the TAP device's queue length (--tap-queue): a
kernel that refuses it gets one line on stderr naming the port and the reason, and the
device is still brought up with its own queue (no traceback, kdp carries on). A stand-in
for pyroute2's IPRoute records what was asked; the device itself is not needed."""
import pytest

pytest.importorskip("pyroute2")
from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402

from kdp.attach import TAP_QUEUE, TapPort  # noqa: E402


class FakeIPRoute:
    def __init__(self, refuse=None):
        self.refuse, self.calls = refuse, []

    def link_lookup(self, ifname):
        return [7]

    def link(self, cmd, index, **attrs):
        self.calls.append((cmd, index, attrs))
        if "txqlen" in attrs and self.refuse is not None:
            raise self.refuse

    def get_links(self, index):
        class Msg:
            def get_attr(self, name):
                return "02:00:00:00:00:07" if name == "IFLA_ADDRESS" else None
        return [Msg()]


def _port():
    p = TapPort.__new__(TapPort)         # (no /dev/net/tun: set_up only talks netlink)
    p.name, p.device, p.mac = "shop/client", "tq7", None
    return p


def test_the_queue_is_set_before_the_device_comes_up():
    ipr = FakeIPRoute()
    _port().set_up(ipr)
    assert ipr.calls == [("set", 7, {"txqlen": TAP_QUEUE}), ("set", 7, {"state": "up"})]
    assert TAP_QUEUE == 4096


def test_zero_leaves_the_devices_queue_alone():
    ipr = FakeIPRoute()
    _port().set_up(ipr, 0)
    assert ipr.calls == [("set", 7, {"state": "up"})]


@pytest.mark.parametrize("refusal", [NetlinkError(12, "Cannot allocate memory"), OSError(1, "Operation not permitted")],
                         ids=["netlink", "oserror"])
def test_a_refused_queue_is_one_line_and_the_device_still_comes_up(capsys, refusal):
    ipr, p = FakeIPRoute(refuse=refusal), _port()
    p.set_up(ipr, 64)
    assert ipr.calls[-1] == ("set", 7, {"state": "up"})
    assert p.mac == bytes.fromhex("020000000007")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "--port shop/client=tq7: queue of 64 frames refused" in err and refusal.args[1] in err
