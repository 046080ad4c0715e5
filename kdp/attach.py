"""`kdp attach`: the data plane live on TAP devices.

Each `--port NAME=TAPDEV` is a data-plane port (NodeConfig `ports`: a local pod's, the
uplink, ...) backed by a TAP device that kdp creates, or opens when it exists. kdp holds
the device's file descriptor; the device itself is the other end, as a veth's pod side
is: move it into the pod's network namespace and give it the pod's address, with a
default route through the gateway kdp answers for (Calico's 169.254.1.1), and the pod's
traffic flows through kdp's pipeline: the same tables, conntrack, counters and log as a
replay, on the monotonic clock.

Per iteration the loop waits (poll) for any port to be readable, reads up to a batch of
frames from every readable port, runs the batch, and writes each transmitted packet to
its egress port's device. kdp answers ARP requests and IPv6 neighbour solicitations on
its ports for every address but the asker's own (proxy ARP / proxy ND, as Calico's host
side does; never a duplicate address detection probe) with ATTACH_MAC, learns the
askers' MACs (the neighbour table), and asks for the MAC of every local pod behind a
port (ARP request, or neighbour solicitation from GATEWAY6), holding up to three frames
a pod until it answers.

TAP devices are opened with IFF_VNET_HDR (a virtio-net header before each frame) and
offloads off (TUNSETOFFLOAD 0): the kernel hands kdp whole, checksummed frames, never a
64 KB GSO super-frame, and kdp writes headers that ask for nothing. Link state is set
with pyroute2 (netlink); the TUNSETIFF-class calls are ioctls, which pyroute2 does not
cover. Frames for the node itself go to the host port when one is attached (its kernel side is
the node's stack, where kube-proxy's health server listens: kdp.healthserver).
SIGINT / SIGTERM stop the loop; the devices kdp created disappear with their
descriptors; the summary is printed. SIGHUP, or a file of the snapshot that changed
(checked every second), reloads it (compiled aside, swapped between batches; an invalid
one is reported and changes nothing).
"""
import errno
import fcntl
import os
import select
import signal
import struct
import sys
import time

from kdp._fast.packet import Batch, LinkType
from kdp.errors import KdpError
from kdp.reasons import Reason, Verdict

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
VNET_HDR_LEN = 12                   # struct virtio_net_hdr_v1 (with num_buffers)
VNET_ZERO = bytes(VNET_HDR_LEN)     # no checksum to complete, no segmentation
ATTACH_MAC = bytes.fromhex("eeeeeeeeeeee")   # kdp's side of every port (Calico's host-side MAC)
MAX_FRAME = 65536
HOST_PORT = 1                       # kdp.ports.HOST: the node itself
RECHECK_FILES_S = 1.0               # how often the snapshot's files are checked for changes


def _ip(value):
    """An address as an int (IPv4 below 2**32, else IPv6; no pod has an IPv6 address
    below 2**32) as text."""
    import ipaddress
    return str(ipaddress.IPv4Address(value) if value < 1 << 32 else ipaddress.IPv6Address(value))


class TapPort:
    """One TAP device and the data-plane port it carries."""

    def __init__(self, name, device, port_id):
        self.name, self.device, self.port_id = name, device, port_id
        try:
            self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise KdpError(f"--port {name}={device}: cannot open /dev/net/tun: {exc.strerror}") from None
        try:
            fcntl.ioctl(self.fd, TUNSETIFF, struct.pack("16sH", device.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
            fcntl.ioctl(self.fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
            fcntl.ioctl(self.fd, TUNSETOFFLOAD, 0)
        except OSError as exc:
            os.close(self.fd)
            raise KdpError(f"--port {name}={device}: cannot attach the TAP device: {exc.strerror}") from None
        self.rx = self.tx = self.rx_bytes = self.tx_bytes = self.tx_errors = 0
        self.recorder = None            # --pcap-out: kdp.io.recorder.Recorder
        self.mac = None                 # the device's own MAC (its kernel side), when kdp saw it

    def set_up(self, ipr):
        idx = ipr.link_lookup(ifname=self.device)
        if idx:
            ipr.link("set", index=idx[0], state="up")
            mac = ipr.get_links(idx[0])[0].get_attr("IFLA_ADDRESS")
            self.mac = bytes.fromhex(mac.replace(":", "")) if mac else None

    def read_into(self, batch, now_ns, room):
        """Read up to `room` frames into `batch`; returns how many."""
        n = 0
        while n < room:
            try:
                data = os.read(self.fd, MAX_FRAME + VNET_HDR_LEN)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    break
                raise
            if len(data) <= VNET_HDR_LEN:
                continue
            frame = memoryview(data)[VNET_HDR_LEN:]
            batch.append(frame, ts_ns=now_ns, linktype=LinkType.LT_ETHERNET, in_port=self.port_id)
            self.rx += 1
            self.rx_bytes += len(frame)
            if self.recorder is not None:
                self.recorder.rx(self, frame, now_ns)
            n += 1
        return n

    def send(self, frame):
        try:
            os.write(self.fd, VNET_ZERO + frame)
            self.tx += 1
            self.tx_bytes += len(frame)
        except OSError:                 # the device is down or gone: counted
            self.tx_errors += 1
            return
        if self.recorder is not None:
            self.recorder.tx(self, frame, time.monotonic_ns())

    def close(self):
        os.close(self.fd)


GATEWAY4 = bytes([169, 254, 1, 1])     # the address kdp's ARP requests come from


def arp_request(ip4):
    """An ARP request for the IPv4 address ip4 (4 bytes), from kdp's side of a port."""
    return (b"\xff" * 6 + ATTACH_MAC + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x01"
            + ATTACH_MAC + GATEWAY4 + bytes(6) + ip4)


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


def neighbour_solicitation(ip6):
    """A neighbour solicitation for ip6 (16 bytes) to its solicited-node group."""
    group = bytes.fromhex("ff0200000000000000000001ff") + ip6[13:]     # ff02::1:ffXX:XXXX
    mac = b"\x33\x33" + group[12:]
    body = struct.pack("!BBHI", 135, 0, 0, 0) + ip6 + b"\x01\x01" + ATTACH_MAC
    return mac + ATTACH_MAC + b"\x86\xdd" + _icmp6(GATEWAY6, group, body)


def neighbour_advertisement(frame):
    """kdp's answer to an IPv6 neighbour solicitation (None: not one it answers): every
    target but the asker's own address, as proxy ARP does for IPv4."""
    if len(frame) < 14 + 40 + 24 or frame[12:14] != b"\x86\xdd" or frame[20] != 58 or frame[54] != 135:
        return None
    src, target = frame[22:38], frame[62:78]
    if target == src or src == bytes(16):
        return None             # (from the unspecified address: duplicate address detection)
    dst, mac = src, frame[6:12]
    body = struct.pack("!BBHI", 136, 0, 0, 0xE0000000) + target + b"\x02\x01" + ATTACH_MAC
    return mac + ATTACH_MAC + b"\x86\xdd" + _icmp6(target, dst, body)


def arp_reply(frame):
    """The proxy-ARP answer to an Ethernet/IPv4 ARP request (None: not one kdp answers)."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    arp = frame[14:42]
    if arp[0:8] != b"\x00\x01\x08\x00\x06\x04\x00\x01":         # Ethernet/IPv4, request
        return None
    sha, spa, tpa = arp[8:14], arp[14:18], arp[24:28]
    if tpa == spa or spa == b"\x00\x00\x00\x00":                 # gratuitous ARP, DAD probe
        return None
    return (sha + ATTACH_MAC + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x02"
            + ATTACH_MAC + tpa + sha + spa)


class Attached:
    """The live loop over a Dataplane and its TAP ports."""

    def __init__(self, dp, ports, cluster, node, batch_size=256, log=None, health=None):
        self.dp, self.ports, self.cluster, self.node = dp, ports, cluster, node
        self.by_id = {p.port_id: p for p in ports}
        self.batch = Batch(batch_size)
        self.log = log
        self.health = health                # kdp.healthserver.HealthServers, or None
        self.stop = False
        self.reload_asked = False
        self.reloads = []               # (monotonic time, "ok" or the error)
        self.arp_answered = 0
        self.no_device = 0              # transmitted to a port without a TAP device
        self.unresolved_dropped = 0     # waited for a neighbour that never answered
        # frames for a local pod whose MAC kdp does not know yet: (port id, IPv4) ->
        # [frames], sent once its ARP reply is learned (Linux queues them the same way)
        self.pending = {}
        self.asked = {}                 # (port id, IPv4) -> monotonic time of the last request
        dp.pipeline.packet_clock = False

    def run(self, duration=None):
        """Run until SIGINT/SIGTERM (or `duration` seconds)."""
        poller = select.poll()
        for p in self.ports:
            poller.register(p.fd, select.POLLIN)
        fds = {p.fd: p for p in self.ports}
        deadline = None if duration is None else time.monotonic() + duration
        files, checked = self._files(), time.monotonic()
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
            if self.reload_asked:
                self._reload()
            self._resolve_pods()
            ready = poller.poll(100)
            if not ready:
                continue
            self.batch.clear()
            now = time.monotonic_ns()
            room = self.batch.capacity
            for fd, _ev in ready:
                room -= fds[fd].read_into(self.batch, now, room)
                if room <= 0:
                    break
            if len(self.batch):
                self._run_batch(now)

    def _run_batch(self, now):
        b = self.batch
        self.dp.pipeline.run(b, self.log, now)
        meta = b.meta
        for i in range(len(b)):
            m = meta[i]
            verdict = int(m["verdict"])
            if verdict == Verdict.LOCAL and int(m["ip_ver"]) == 6 and int(m["proto"]) == 58 \
                    and int(m["icmp_type"]) == 135:
                answer = neighbour_advertisement(b.packet(i))
                port = self.by_id.get(int(m["in_port"]))
                if answer is not None and port is not None:
                    port.send(answer)
                    self.arp_answered += 1
                continue
            if verdict == Verdict.LOCAL and int(m["reason"]) == Reason.ARP:
                answer = arp_reply(b.packet(i))
                port = self.by_id.get(int(m["in_port"]))
                if answer is not None and port is not None:
                    port.send(answer)
                    self.arp_answered += 1
                continue
            if verdict == Verdict.LOCAL:
                # the node itself: its kernel is behind the host port, when one is attached
                # (kube-proxy's health server among what listens there)
                port = self.by_id.get(HOST_PORT) if int(m["out_port"]) == HOST_PORT else None
                if port is not None and port.mac is not None:
                    frame = b.packet(i)
                    if frame[12:14] in (b"\x08\x00", b"\x86\xdd"):   # IP: to the node's stack
                        port.send(port.mac + ATTACH_MAC + frame[12:])
                continue
            if verdict in (Verdict.FORWARD, Verdict.REJECT, Verdict.REPLY):
                port = self.by_id.get(int(m["out_port"]))
                if port is None:
                    self.no_device += 1
                    continue
                frame = b.packet(i)
                ver = int(m["ip_ver"])
                dst = int(m["dst4"]) if ver == 4 else int.from_bytes(bytes(m["dst6"]), "big")
                if ver in (4, 6) and self._unresolved(port, dst, frame):
                    continue
                port.send(frame)
        extra = self.dp.extra
        for i in range(len(extra)):
            port = self.by_id.get(int(extra.meta[i]["out_port"]))
            if port is not None:
                port.send(extra.packet(i))
        if self.log is not None:
            self.log.write(b)

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

    def _resolve_pods(self):
        """Ask (again, once a second) for the MAC of every local pod kdp has not heard
        from, and send what waited for an answer that came."""
        now = time.monotonic()
        neigh = self.dp.pipeline.neighbours
        for port, ip in self._local_pods():
            key = (port.port_id, ip)
            mac = neigh.get(_ip(ip))
            if mac is not None:
                for frame in self.pending.pop(key, ()):
                    port.send(mac + frame[6:])
                continue
            if now - self.asked.get(key, 0.0) >= 1.0:
                self.asked[key] = now
                port.send(arp_request(ip.to_bytes(4, "big")) if ip < 1 << 32
                          else neighbour_solicitation(ip.to_bytes(16, "big")))
        for key in [k for k, t in self.asked.items() if k in self.pending and now - t > 3.0 and
                    neigh.get(_ip(k[1])) is None]:
            self.unresolved_dropped += len(self.pending.pop(key))

    def _unresolved(self, port, dst, frame):
        """Queue `frame` (at most 3 a neighbour) when its destination (an IPv4 or IPv6
        address as an int) is a local pod whose MAC kdp does not know; True when it was
        queued (or dropped: counted)."""
        key = (port.port_id, dst)
        if key not in self.asked or self.dp.pipeline.neighbours.get(_ip(dst)) is not None:
            return False
        queue = self.pending.setdefault(key, [])
        if len(queue) < 3:
            queue.append(frame)
        else:
            self.unresolved_dropped += 1
        return True

    def _reload(self):
        self.reload_asked = False
        try:
            flushed = self.dp.reload(self.cluster, node=self.node)
            if self.health is not None:
                self.health.update()
            self.reloads.append((time.monotonic(), f"ok ({flushed} flows flushed)"))
            print(f"kdp attach: reloaded {', '.join(map(str, self.cluster))}: {flushed} flows flushed",
                  file=sys.stderr, flush=True)
        except KdpError as exc:
            self.reloads.append((time.monotonic(), str(exc)))
            print(f"kdp attach: reload failed, nothing changed: {exc}", file=sys.stderr, flush=True)


def attach(cluster, node, port_specs, batch_size=256, log=None, duration=None, ready=None,
           metrics=None, pcap_out=None):
    """Open the TAP ports, run until stopped; returns (Attached, RunResult). `metrics`:
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
            ports.append(TapPort(name, device, dp.ports.id_of(name)))
        with IPRoute() as ipr:
            for p in ports:
                p.set_up(ipr)
        if log:
            log_file = LogFile(log)
            vlog = dp.verdict_log(log_file, batch_size)
        if pcap_out:
            from kdp.io.recorder import Recorder
            recorder = Recorder(pcap_out, ports)
            for p in ports:
                p.recorder = recorder
        from kdp.healthserver import HealthServers
        health = HealthServers(dp)
        health.update()
        loop = Attached(dp, ports, cluster, node, batch_size, vlog, health)
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
