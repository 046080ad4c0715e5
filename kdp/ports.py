"""Port names and ids: the one mapping every part of kdp uses.

A port is where packets enter or leave the data plane: the node's uplink, the host
itself, a pod's interface, a pcapng interface of a replayed capture. Packets carry
ports as small integers (``in_port`` / ``out_port``, uint16); this table names them.
Id 0 is always "uplink", id 1 is always "host"; other names get ids on demand, in
the order they are first asked for, so a replay assigns the same ids every time.
NO_PORT (0xFFFF) is never assigned: it means "no port".

Capture interfaces (a pcapng if_name, an SLL2 interface index named through a links
file) map onto ports with `port_of_interface`: a NodeConfig port's `interface` (the
uplink's `eth0`, a pod's host-side `cali…`/`veth…`) names its port; `lo` is the host;
`any` (tcpdump's pseudo-interface) is no port at all; any other name is a port of its
own name.
"""

UPLINK = 0
HOST = 1
NO_PORT = 0xFFFF
RESERVED = ("uplink", "host")       # the names of ids 0 and 1
DEFAULT_INTERFACES = {"lo": "host"}  # interface name -> port name, unless NodeConfig says otherwise
ANY_INTERFACE = "any"                # tcpdump/libpcap's capture-on-every-interface device


class PortTable:
    """Bidirectional name <-> id table of ports.

    >>> t = PortTable()
    >>> t.id_of("uplink"), t.id_of("host"), t.id_of("pod-a")
    (0, 1, 2)
    >>> t.name_of(2)
    'pod-a'
    """

    __slots__ = ("_ids", "_names", "_interfaces")

    def __init__(self, names=()):
        self._ids = {"uplink": UPLINK, "host": HOST}
        self._names = ["uplink", "host"]
        self._interfaces = dict(DEFAULT_INTERFACES)
        for name in names:
            self.id_of(name)

    def set_interfaces(self, interfaces):
        """Name the ports of capture interfaces: {interface name: port name} (NodeConfig
        `ports[].interface`); replaces the previous mapping (lo stays the host unless named)."""
        self._interfaces = {**DEFAULT_INTERFACES, **interfaces}

    def port_of_interface(self, interface: str):
        """The port id of a capture interface's name (see the module docstring); None for
        "any". A name nobody configured becomes a port of that name (ValueError when the
        table is full)."""
        if interface == ANY_INTERFACE:
            return None
        return self.id_of(self._interfaces.get(interface, interface))

    def interfaces(self) -> dict:
        """{interface name: port name} as configured (with the default for lo)."""
        return dict(self._interfaces)

    def id_of(self, name: str) -> int:
        """The id of `name`, giving it the next free id if it has none yet."""
        port = self._ids.get(name)
        if port is not None:
            return port
        if not isinstance(name, str) or not name:
            raise ValueError(f"a port name must be a non-empty string, got {name!r}")
        if len(self._names) >= NO_PORT:
            raise ValueError(f"too many ports: at most {NO_PORT} (ids 0..{NO_PORT - 1})")
        port = len(self._names)
        self._ids[name] = port
        self._names.append(name)
        return port

    def get(self, name: str):
        """The id of `name`, or None when it has none (never creates one)."""
        return self._ids.get(name)

    def name_of(self, port: int) -> str:
        """The name of port id `port`; KeyError for an id nobody was given."""
        if isinstance(port, int) and 0 <= port < len(self._names):
            return self._names[port]
        raise KeyError(f"no port with id {port!r}")

    def __contains__(self, name) -> bool:
        return name in self._ids

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self):
        """(id, name) pairs in id order."""
        return iter(enumerate(self._names))

    def items(self):
        """(name, id) pairs in id order."""
        return [(n, i) for i, n in enumerate(self._names)]

    def __repr__(self) -> str:
        return f"PortTable({self._names[2:]!r})"
