"""Addresses in the model: an IP is (version, int), a prefix (version, network, length)."""
import ipaddress
import socket

_AF = {4: socket.AF_INET, 6: socket.AF_INET6}


def parse_ip(text):
    """'10.0.0.1' -> (4, 167772161); raises ValueError for anything else."""
    if not isinstance(text, str):
        raise ValueError(f"not an IP address: {text!r}")
    try:
        return (4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big"))
    except OSError:
        pass
    if "%" not in text:
        try:
            return (6, int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big"))
        except OSError:
            pass
    raise ValueError(f"not an IP address: {text!r}")


def parse_prefix(text):
    """'10.244.0.0/16' -> (4, net, 16). Host bits are cleared; a bare address is /32 or /128."""
    if not isinstance(text, str):
        raise ValueError(f"not a CIDR: {text!r}")
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"not a CIDR: {text!r}") from None
    return (net.version, int(net.network_address), net.prefixlen)


def host_prefix(ip):
    ver, value = ip
    return (ver, value, 32 if ver == 4 else 128)


def format_ip(ip):
    ver, value = ip
    return socket.inet_ntop(_AF[ver], value.to_bytes(4 if ver == 4 else 16, "big"))


def format_prefix(prefix):
    ver, value, plen = prefix
    return f"{format_ip((ver, value))}/{plen}"


def prefix_contains(prefix, ip):
    ver, net, plen = prefix
    if ip[0] != ver:
        return False
    bits = 32 if ver == 4 else 128
    return (ip[1] >> (bits - plen)) == (net >> (bits - plen)) if plen else True


def prefixes_overlap(a, b):
    if a[0] != b[0]:
        return False
    plen = min(a[2], b[2])
    bits = 32 if a[0] == 4 else 128
    return (a[1] >> (bits - plen)) == (b[1] >> (bits - plen)) if plen else True


def a4_a6(ip):
    """The (a4, a6 bytes) pair the C tables store: IPv4 host-order int, IPv6 16 bytes."""
    ver, value = ip
    if ver == 4:
        return value, bytes(16)
    return 0, value.to_bytes(16, "big")
