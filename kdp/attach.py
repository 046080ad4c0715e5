"""`kdp attach`: the data plane live on TAP devices.

Each `--port NAME=TAPDEV` is a data-plane port (NodeConfig `ports`: a local pod's, the
uplink, ...) backed by a TAP device that kdp creates, or opens when it exists. kdp holds
the device's file descriptor; the device itself is the other end, as a veth's pod side
is: move it into the pod's network namespace and give it the pod's address, with a
default route through the gateway kdp answers for (Calico's 169.254.1.1), and the pod's
traffic flows through kdp's pipeline: the same tables, conntrack, counters and log as a
replay, on the monotonic clock.

The I/O is in the fast core (kdp/_fast/tapio.pyx): per iteration the loop waits (poll)
for any port to be readable, reads a batch of frames from every readable port, runs the
batch and writes each transmitted frame to its egress port's device, all without a
Python object per frame. Writing is most of the work (a TAP write runs the receiving
namespace's input path in the writer's thread), so a batch of OVERLAP_MIN frames or more
is written by a second thread while the loop reads and runs the next one into a second
Batch (`writer_thread`; smaller batches, the latency-bound case, are written at once, as
are batches with fragments or segments and everything when --pcap-out records). That
thread is the core's own (TapIO.start_writer: a pthread holding no Python object), so a
hand-off costs a mutex and a wake-up, not the GIL. A batch's writes go to the kernel
through an io_uring, one system call for up to 256 (TapIO.use_io_uring; `io_uring=False`
or a kernel that refuses a ring: a writev a frame).

kdp answers ARP requests and IPv6 neighbour solicitations on its ports for every
address but the asker's own, with ATTACH_MAC (proxy ARP / proxy ND, as Calico's host
side does; never a duplicate address detection probe); on the uplink, a network others
share, only for the node's own addresses and with the uplink's MAC. It learns the
askers' MACs (the neighbour table), asks for the MAC of every local pod behind a port
(ARP request, or neighbour solicitation from GATEWAY6), holding up to three frames
a pod until it answers, and asks for each next hop on the uplink (the gateway, the
other nodes) from the node's address until it answers, then every REPROBE_S seconds.
Those rare frames are handled here, in Python.

TAP devices are opened with IFF_VNET_HDR (a virtio-net header before each frame) and the
offloads TUN_F_CSUM, TUN_F_TSO4 and TUN_F_TSO6 (`offloads=False`: none): the kernel hands
kdp frames with partial checksums, which kdp completes, and TCP super-frames of up to
64 KiB, which cross kdp whole (cut into segments only before a tunnel), so a TCP stream
costs kdp one frame per 64 KiB instead of one per 1,448 bytes. Link state is set
with pyroute2 (netlink); the TUNSETIFF-class calls are ioctls, which pyroute2 does not
cover. Frames for the node itself go to the host port when one is attached (its kernel side is
the node's stack, where kube-proxy's health server listens: kdp.healthserver).
SIGINT / SIGTERM stop the loop; the devices kdp created disappear with their
descriptors; the summary is printed. SIGHUP, or a file of the snapshot that changed
(checked every second), reloads it (compiled aside, swapped between batches; an invalid
one is reported and changes nothing).
"""
import fcntl
import ipaddress
import os
import signal
import struct
import sys
import time

from kdp._fast.packet import Batch
from kdp._fast.route import PLACEHOLDER_SRC, placeholder_mac
from kdp._fast.tapio import TapIO
from kdp.errors import KdpError
from kdp.reasons import Verdict

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04
VNET_HDR_LEN = 12                   # struct virtio_net_hdr_v1 (with num_buffers): tapio.pxd
ATTACH_MAC = bytes.fromhex("eeeeeeeeeeee")   # kdp's side of every port (Calico's host-side MAC)
HOST_PORT = 1                       # kdp.ports.HOST: the node itself
UPLINK_PORT = 0                     # kdp.ports.UPLINK: the network the other nodes are on
REPROBE_S = 30.0                    # a resolved next hop is asked again this often
MIN_BATCH = 8                       # a batch's buffer must hold one 64 KiB super-frame
OVERLAP_MIN = 16                    # batches this large are written by the writer thread
RECHECK_FILES_S = 1.0               # how often the snapshot's files are checked for changes
BUSY_POLL_US = 50                   # the loop asks without sleeping this long before it sleeps


def _ip(value):
    """An address as an int (IPv4 below 2**32, else IPv6; no pod has an IPv6 address
    below 2**32) as text."""
    import ipaddress
    return str(ipaddress.IPv4Address(value) if value < 1 << 32 else ipaddress.IPv6Address(value))


class TapPort:
    """One TAP device and the data-plane port it carries; its counters live in the
    TapIO that reads and writes it (`io`)."""

    def __init__(self, name, device, port_id, offloads=True):
        self.name, self.device, self.port_id = name, device, port_id
        try:
            self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise KdpError(f"--port {name}={device}: cannot open /dev/net/tun: {exc.strerror}") from None
        try:
            fcntl.ioctl(self.fd, TUNSETIFF, struct.pack("16sH", device.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
            fcntl.ioctl(self.fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
            fcntl.ioctl(self.fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 if offloads else 0)
        except OSError as exc:
            os.close(self.fd)
            raise KdpError(f"--port {name}={device}: cannot attach the TAP device: {exc.strerror}") from None
        self.io = None
        self.recorder = None            # --pcap-out: kdp.io.recorder.Recorder
        self.mac = None                 # the device's own MAC (its kernel side), when kdp saw it

    def set_up(self, ipr):
        idx = ipr.link_lookup(ifname=self.device)
        if idx:
            ipr.link("set", index=idx[0], state="up")
            mac = ipr.get_links(idx[0])[0].get_attr("IFLA_ADDRESS")
            self.mac = bytes.fromhex(mac.replace(":", "")) if mac else None

    def _counter(self, k):
        return self.io.counters(self.port_id)[k] if self.io is not None else 0

    rx = property(lambda self: self._counter(0), doc="frames read")
    rx_bytes = property(lambda self: self._counter(1))
    tx = property(lambda self: self._counter(2), doc="frames written")
    tx_bytes = property(lambda self: self._counter(3))
    tx_errors = property(lambda self: self._counter(4), doc="writes that failed (device down or gone)")

    def send(self, frame):
        """Write one complete frame (kdp's ARP / ND answers and requests, held frames)."""
        if self.io.write_frame(self.port_id, frame) and self.recorder is not None:
            self.recorder.tx(self, frame, time.monotonic_ns())

    def close(self):
        os.close(self.fd)


GATEWAY4 = bytes([169, 254, 1, 1])     # the address kdp's ARP requests come from


def arp_request(ip4, sender_ip=GATEWAY4, mac=ATTACH_MAC):
    """An ARP request for the IPv4 address ip4 (4 bytes), from kdp's side of a port: the
    gateway address pods use, or on the uplink the node's address and the uplink's MAC."""
    return (b"\xff" * 6 + mac + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x01"
            + mac + sender_ip + bytes(6) + ip4)


# kdp's link-local address on its ports (EUI-64 of ATTACH_MAC, as Calico's host side has)
GATEWAY6 = bytes.fromhex("fe80000000000000ecee eeff feee eeee".replace(" ", ""))


def _icmp6(src, dst, body):
    """An IPv6 packet (hop limit 255, as neighbour discovery requires) carrying ICMPv6
    `body` (its checksum field zero), the checksum filled in."""
    pseudo = src + dst + struct.pack("!I", len(body)) + b"\0\0\0\x3a"
    data = pseudo + body + (b"\0" if len(body) % 2 else b"")
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    csum = ~total & 0xFFFF
    body = body[:2] + struct.pack("!H", csum) + body[4:]
    return struct.pack("!IHBB", 0x60000000, len(body), 58, 255) + src + dst + body


def neighbour_solicitation(ip6, mac=ATTACH_MAC):
    """A neighbour solicitation for ip6 (16 bytes) to its solicited-node group, from
    kdp's link-local address with `mac` (kdp's side of the port) as its link-layer address."""
    group = bytes.fromhex("ff0200000000000000000001ff") + ip6[13:]     # ff02::1:ffXX:XXXX
    dst = b"\x33\x33" + group[12:]
    body = struct.pack("!BBHI", 135, 0, 0, 0) + ip6 + b"\x01\x01" + mac
    return dst + mac + b"\x86\xdd" + _icmp6(GATEWAY6, group, body)


def neighbour_advertisement(frame, only=None, mac=ATTACH_MAC):
    """kdp's answer to an IPv6 neighbour solicitation (None: not one it answers): every
    target but the asker's own address, as proxy ARP does for IPv4; `only`: the set of
    targets (16 bytes each) to answer for; `mac`: kdp's side of the port."""
    if len(frame) < 14 + 40 + 24 or frame[12:14] != b"\x86\xdd" or frame[20] != 58 or frame[54] != 135:
        return None
    src, target = frame[22:38], frame[62:78]
    if target == src or src == bytes(16):
        return None             # (from the unspecified address: duplicate address detection)
    if only is not None and target not in only:
        return None
    dst, asker = src, frame[6:12]
    body = struct.pack("!BBHI", 136, 0, 0, 0xE0000000) + target + b"\x02\x01" + mac
    return asker + mac + b"\x86\xdd" + _icmp6(target, dst, body)


def arp_reply(frame, only=None, mac=ATTACH_MAC):
    """The proxy-ARP answer to an Ethernet/IPv4 ARP request (None: not one kdp answers);
    `only`: the set of target addresses (4 bytes each) to answer for; `mac`: kdp's side
    of the port."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    arp = frame[14:42]
    if arp[0:8] != b"\x00\x01\x08\x00\x06\x04\x00\x01":         # Ethernet/IPv4, request
        return None
    sha, spa, tpa = arp[8:14], arp[14:18], arp[24:28]
    if tpa == spa or spa == b"\x00\x00\x00\x00":                 # gratuitous ARP, DAD probe
        return None
    if only is not None and tpa not in only:
        return None
    return (sha + mac + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x02"
            + mac + tpa + sha + spa)


class Attached:
    """The live loop over a Dataplane and its TAP ports."""

    def __init__(self, dp, ports, cluster, node, batch_size=256, log=None, health=None, writer_thread=True,
                 busy_poll_us=BUSY_POLL_US, io_uring=True):
        self.dp, self.ports, self.cluster, self.node = dp, ports, cluster, node
        self.io_uring = io_uring
        self.busy_poll_us = busy_poll_us
        self.writer_thread = writer_thread
        self.writing = False            # a batch is with the writer thread (TapIO.submit)
        self.written_aside = 0          # batches the writer thread wrote
        self.by_id = {p.port_id: p for p in ports}
        self.batch = Batch(max(batch_size, MIN_BATCH))
        self.io = TapIO([p.fd for p in ports], [p.port_id for p in ports], ATTACH_MAC,
                        dp.pipeline.neighbours, self.batch.capacity)
        for p in ports:
            p.io = self.io
        host = self.by_id.get(HOST_PORT)
        if host is not None and host.mac is not None:
            self.io.set_host_mac(host.mac)
        self.recording = any(p.recorder is not None for p in ports)
        self.io.recording = self.recording
        self.log = log
        self.health = health                # kdp.healthserver.HealthServers, or None
        self.stop = False
        self.reload_asked = False
        self.reloads = []               # (monotonic time, "ok" or the error)
        self.arp_answered = 0
        self.unresolved_dropped = 0     # waited for a neighbour that never answered
        # frames for a local pod whose MAC kdp does not know yet: (port id, address) ->
        # [frames], sent once its ARP reply is learned (Linux queues them the same way)
        self.pending = {}
        self.asked = {}                 # (port id, address) -> monotonic time of the last request
        self._learn_topology()
        dp.pipeline.packet_clock = False

    def offload_counts(self):
        """What the TAP offloads did: super-frames read whole, segments kdp cut from them,
        partial checksums completed, super-frames of a type never offered or not plain TCP
        (dropped), super-frames left unsendable by a stage (dropped; never seen)."""
        io = self.io
        return {"gso_frames": io.gso_frames, "segments_cut": int(self.dp.pipeline.segments),
                "checksums_completed": io.csum_completed, "gso_refused": io.gso_refused,
                "gso_unsendable": io.gso_unsendable}

    @property
    def no_device(self):
        """Frames transmitted to a port without a TAP device."""
        return self.io.no_device

    def run(self, duration=None):
        """Run until SIGINT/SIGTERM (or `duration` seconds)."""
        deadline = None if duration is None else time.monotonic() + duration
        files, checked = self._files(), time.monotonic()
        io = self.io
        batches = [self.batch, Batch(self.batch.capacity)] if self.writer_thread else [self.batch]
        lane = 0
        self._resolve_neighbours()
        if self.io_uring and not io.io_uring:
            try:
                io.use_io_uring()
            except OSError as exc:
                print(f"kdp attach: {exc}: a writev a frame", file=sys.stderr, flush=True)
        aside = False
        if self.writer_thread:
            try:
                io.start_writer()
                aside = True
            except OSError as exc:
                print(f"kdp attach: {exc}; every batch is written by the loop", file=sys.stderr, flush=True)
        try:
            while not self.stop:
                now_s = time.monotonic()
                if deadline is not None and now_s >= deadline:
                    break
                if now_s - checked >= RECHECK_FILES_S:
                    checked = now_s
                    seen = self._files()
                    if seen != files:
                        files = seen
                        self.reload_asked = True
                    self._drain()
                    self._resolve_neighbours()
                if self.reload_asked:
                    self._drain()
                    self._reload()
                if self.pending:
                    self._drain()
                    self._resolve_neighbours()
                if not io.wait(100, self.busy_poll_us):
                    self._drain()
                    continue
                b = batches[lane]
                b.clear()
                now = time.monotonic_ns()
                got = io.read_into(b, now)
                if got:
                    if self._run_batch(b, now, aside and got >= OVERLAP_MIN):
                        lane = (lane + 1) % len(batches)
        finally:
            self._drain()
            io.stop_writer()

    def _run_batch(self, b, now, aside=False):
        """Run batch b and write what it transmits: on the writer thread (`aside`) while
        the loop reads the next batch, or here. True when b is still being written."""
        io = self.io
        if self.recording:                  # as received, before NAT rewrites them
            for i in range(len(b)):
                port = self.by_id.get(int(b.meta[i]["in_port"]))
                if port is not None and port.recorder is not None:
                    port.recorder.rx(port, b.packet(i), now)
        self.dp.pipeline.run(b, self.log, now)
        self._drain()                       # the previous batch's frames leave first
        extra = self.dp.extra
        overlap = aside and not len(extra) and not self.recording
        if overlap:
            io.prepare(b)
        else:
            io.send(b, extra)
        if io.n_slow:
            self._answer(b, io.slow[:io.n_slow])
        if io.n_held:
            self._hold(b, io.held[:io.n_held])
        if self.log is not None:
            self.log.write(b)
        if overlap:
            io.submit(b)
            self.writing = True
            self.written_aside += 1
            return True
        if self.recording:
            self._record_sent(b, now)
        return False

    def _drain(self):
        """Wait for the writer thread's batch to be written."""
        if self.writing:
            self.writing = False
            self.io.finish()

    def _record_sent(self, b, now):
        extra, sent = self.dp.extra, self.io.sent_port
        for i in range(len(b)):
            port = self.by_id.get(int(sent[i]))
            if port is not None and port.recorder is not None:
                port.recorder.tx(port, b.packet(i), now)
        for i in range(len(extra)):         # fragments, segments
            port = self.by_id.get(int(extra.meta[i]["out_port"]))
            if port is not None and port.recorder is not None and \
                    int(extra.meta[i]["verdict"]) in (Verdict.FORWARD, Verdict.REJECT, Verdict.REPLY):
                port.recorder.tx(port, extra.packet(i), now)

    def _answer(self, b, indices):
        """Proxy ARP and proxy ND answers to the requests batch b brought."""
        for i in indices:
            i = int(i)
            frame = b.packet(i)
            port = self.by_id.get(int(b.meta[i]["in_port"]))
            # on the uplink (a network others share): only the node's own addresses, with
            # the uplink's own MAC (each node's differs; ATTACH_MAC is the pods' gateway)
            uplink = port is not None and port.port_id == UPLINK_PORT
            only, mac = (self.node_addresses, self.uplink_mac) if uplink else (None, ATTACH_MAC)
            answer = arp_reply(frame, only, mac) if frame[12:14] == b"\x08\x06" else \
                neighbour_advertisement(frame, only, mac)
            if answer is not None and port is not None:
                port.send(answer)
                self.arp_answered += 1

    def _hold(self, b, indices):
        """Queue frames whose local pod has not told kdp its MAC yet (at most 3 a pod,
        the rest dropped, counted), and ask for it."""
        for i in indices:
            m = b.meta[int(i)]
            dst = int(m["dst4"]) if int(m["ip_ver"]) == 4 else int.from_bytes(bytes(m["dst6"]), "big")
            queue = self.pending.setdefault((int(m["out_port"]), dst), [])
            if len(queue) < 3:
                queue.append(b.packet(int(i)))
            else:
                self.unresolved_dropped += 1
        self._resolve_neighbours()

    def _files(self):
        """What identifies the snapshot's files now: (path, mtime, size) of each; a file
        that changed, came or went makes the loop reload."""
        from kdp.control.loader import snapshot_files
        out = []
        try:
            for path in snapshot_files(self.cluster):
                st = os.stat(path)
                out.append((path, st.st_mtime_ns, st.st_size))
        except (KdpError, OSError):
            return None                 # unreadable now: the reload will say why
        return out

    def _local_pods(self):
        """(port, IPv4 int) of every local pod address behind an attached port."""
        from kdp._fast.route import RouteKind
        out = []
        for route in self.dp.pipeline.routes.routes:
            port = self.by_id.get(route.port)
            net = route.prefix
            if port is not None and route.kind == RouteKind.RT_LOCAL_POD and \
                    net.prefixlen == net.max_prefixlen:
                out.append((port, int(net.network_address)))
        return out

    def _learn_topology(self):
        """From the routes: the local pods behind attached ports (kdp holds their frames
        until they answer), the node's own addresses and the uplink's MAC (what kdp
        answers ARP and neighbour solicitations for, and with, on the uplink), and the
        next hops without a configured MAC behind attached ports other than pods' (the
        gateway, the other nodes), which kdp resolves and keeps asking for."""
        from kdp._fast.route import RouteKind
        self.pods = self._local_pods()
        self.io.hold_for_neighbours({port.port_id for port, _ip in self.pods})
        routes = self.dp.pipeline.routes
        self.node_addresses = {r.prefix.network_address.packed for r in routes.routes
                               if r.kind == RouteKind.RT_HOST and r.prefix.prefixlen == r.prefix.max_prefixlen}
        src4 = routes.src4.to_bytes(4, "big") if routes.has_src4 else None
        # the uplink's MAC as the routes to other nodes carry it (NodeConfig uplink.mac, else
        # the placeholder of the node's address: each node's differs)
        macs = [r.src_mac for r in routes.routes if r.port == UPLINK_PORT and r.src_mac != PLACEHOLDER_SRC]
        self.uplink_mac = macs[0] if macs else \
            placeholder_mac(str(ipaddress.IPv4Address(src4))) if src4 else PLACEHOLDER_SRC
        self.hops = {}                  # (port id, next hop) -> (port, node address, port MAC)
        for r in routes.routes:
            port = self.by_id.get(r.port)
            if port is None or r.via is None or r.mac is not None or r.kind == RouteKind.RT_LOCAL_POD \
                    or (r.via.version == 4 and src4 is None):
                continue
            self.hops[(port.port_id, int(r.via))] = (port, src4, r.src_mac)

    def _resolve_neighbours(self):
        """Ask (again, once a second) for the MAC of every local pod kdp has not heard
        from or has frames waiting for, and send what waited for an answer that came;
        ask for each next hop until it answers, then again every REPROBE_S seconds: its
        answer refreshes the entry, or replaces it when the MAC changed (aging as Linux's
        re-probe of a stale entry; the table is bounded, kdp._fast.neigh)."""
        now = time.monotonic()
        neigh = self.dp.pipeline.neighbours
        wanted = {(port.port_id, ip): port for port, ip in self.pods}
        for key in self.pending:
            if key not in wanted and key[0] in self.by_id:
                wanted[key] = self.by_id[key[0]]
        for key, port in wanted.items():
            ip = key[1]
            mac = neigh.get(_ip(ip))
            if mac is not None:
                for frame in self.pending.pop(key, ()):
                    port.send(mac + frame[6:])
                continue
            if now - self.asked.get(key, 0.0) >= 1.0:
                self.asked[key] = now
                port.send(arp_request(ip.to_bytes(4, "big")) if ip < 1 << 32
                          else neighbour_solicitation(ip.to_bytes(16, "big")))
        for key, (port, src4, mac) in self.hops.items():
            ip = key[1]
            wait = REPROBE_S if neigh.get(_ip(ip)) is not None else 1.0
            if now - self.asked.get(key, 0.0) >= wait:
                self.asked[key] = now
                port.send(arp_request(ip.to_bytes(4, "big"), src4, mac) if ip < 1 << 32
                          else neighbour_solicitation(ip.to_bytes(16, "big"), mac))
        for key in [k for k, t in self.asked.items() if k in self.pending and now - t > 3.0 and
                    neigh.get(_ip(k[1])) is None]:
            self.unresolved_dropped += len(self.pending.pop(key))

    def _reload(self):
        self.reload_asked = False
        try:
            flushed = self.dp.reload(self.cluster, node=self.node)
            if self.health is not None:
                self.health.update()
            self._learn_topology()
            self.reloads.append((time.monotonic(), f"ok ({flushed} flows flushed)"))
            print(f"kdp attach: reloaded {', '.join(map(str, self.cluster))}: {flushed} flows flushed",
                  file=sys.stderr, flush=True)
        except KdpError as exc:
            self.reloads.append((time.monotonic(), str(exc)))
            print(f"kdp attach: reload failed, nothing changed: {exc}", file=sys.stderr, flush=True)


def attach(cluster, node, port_specs, batch_size=256, log=None, duration=None, ready=None,
           metrics=None, pcap_out=None, offloads=True, writer_thread=True, busy_poll_us=BUSY_POLL_US,
           io_uring=True):
    """Open the TAP ports, run until stopped; returns (Attached, RunResult). `offloads`:
    let the kernel hand over partial checksums and TCP super-frames (TapPort);
    `writer_thread`: large batches are written by a second thread (Attached);
    `busy_poll_us`: how long the loop polls without sleeping before it sleeps; `io_uring`:
    batches are written through an io_uring (TapIO.use_io_uring; writev where the kernel
    refuses one). `metrics`:
    HOST:PORT to serve Prometheus metrics on (kdp.metrics); `pcap_out`: a directory for
    attach.pcapng, every frame each port received and sent (kdp.io.recorder)."""
    from pyroute2 import IPRoute

    from kdp.dataplane import Dataplane
    from kdp.io.capture import LogFile
    from kdp.summary import RunResult, dns_outcomes
    dp = Dataplane.from_snapshot(cluster, node)
    ports = []
    log_file = vlog = server = recorder = health = None
    started = time.perf_counter()
    try:
        for spec in port_specs:
            name, sep, device = spec.partition("=")
            if not sep or not name or not device:
                raise KdpError(f"--port takes NAME=TAPDEV, got {spec!r}")
            if len(device.encode()) > 15:
                raise KdpError(f"--port {spec}: a device name has at most 15 bytes")
            if name not in dp.ports:
                known = ", ".join(n for _i, n in dp.ports)
                raise KdpError(f"--port {spec}: no port {name!r} in the snapshot (ports: {known})")
            ports.append(TapPort(name, device, dp.ports.id_of(name), offloads))
        with IPRoute() as ipr:
            for p in ports:
                p.set_up(ipr)
        if log:
            log_file = LogFile(log)
            vlog = dp.verdict_log(log_file, max(batch_size, MIN_BATCH))
        if pcap_out:
            from kdp.io.recorder import Recorder
            recorder = Recorder(pcap_out, ports)
            for p in ports:
                p.recorder = recorder
        from kdp.healthserver import HealthServers
        health = HealthServers(dp)
        health.update()
        loop = Attached(dp, ports, cluster, node, batch_size, vlog, health, writer_thread, busy_poll_us, io_uring)
        if metrics:
            from kdp.metrics import serve
            server = serve(loop, metrics)
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

        def stop(_sig, _frame):
            loop.stop = True

        def reload(_sig, _frame):
            loop.reload_asked = True
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGHUP, reload)
        try:
            if ready is not None:
                ready()
            loop.run(duration)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
    finally:
        if server is not None:
            server[0].shutdown()
        if health is not None:
            health.close()
        for p in ports:
            p.close()
        if log_file is not None:
            log_file.close()
        if recorder is not None:
            recorder.close()
    result = RunResult(
        packets_in=int(dp.counters.sum()), counters=dp.counters.copy(), verdicts=dp.verdicts.copy(),
        packets_out=sum(p.tx for p in ports), input_path=", ".join(f"{p.name}={p.device}" for p in ports),
        notices=list(dp.notices), seconds=time.perf_counter() - started,
        flows=dp.flow_counters(), dns=dns_outcomes(dp.dns_counters), services=dp.service_counts())
    return loop, result
