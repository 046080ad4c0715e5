"""Calico's objects as `kubectl get ippools,blockaffinities -o yaml` prints them
(apiVersion crd.projectcalico.org/v1), validated into model objects.

IPPool (Calico's IPPool resource; the CRD's spec, the fields kdp uses):
  cidr           required; the pool's range
  blockSize      IPv4 20..32 (default 26), IPv6 116..128 (default 122)
  ipipMode       Always | CrossSubnet | Never (default Never); not for IPv6 pools
  vxlanMode      Always | CrossSubnet | Never (default Never)
  natOutgoing    masquerade traffic from the pool to destinations outside every pool
  disabled       no new allocations (routes and natOutgoing still apply)
Calico refuses a pool with both ipipMode and vxlanMode enabled, IP-in-IP on an IPv6
pool, and overlapping pools; so does kdp. Other fields (nodeSelector, allowedUses,
disableBGPExport, ...) do not change what a node's data plane does and are not read.

BlockAffinity (Calico IPAM: a block of a pool claimed by a node):
  node           required; the node the block's addresses live on
  cidr           required; the block
  state          confirmed | pending | pendingDeletion (default confirmed)
  deleted        "true" / "false" (a string in the v1 CRD; booleans accepted)
Only confirmed, not deleted affinities make routes: a pending block has no pods yet,
and one being deleted has none any more.

The parsers take the validation context of kdp.control.validate (field errors name
the file, the object and the field) and are registered there.
"""
from kdp.control import addr
from kdp.control.model import BlockAffinity, IPPool

API_VERSION = "crd.projectcalico.org/v1"
API_VERSIONS = {"IPPool": API_VERSION, "BlockAffinity": API_VERSION}
MODES = ("Always", "CrossSubnet", "Never")
BLOCK_SIZES = {4: (20, 32, 26), 6: (116, 128, 122)}
AFFINITY_STATES = ("confirmed", "pending", "pendingDeletion")


def _name(doc, c):
    meta = c.mapping(doc.get("metadata"), "metadata", required=True)
    return c.string(meta.get("name"), "metadata.name", required=True, default="") or ""


def pool_fields(spec, c, prefix, name="", origin=None):
    """An IPPool from a spec mapping (also NodeConfig's spec.ipPools entries); fields
    are named `prefix` + field in errors. None when the cidr is missing or invalid."""
    cidr_text = spec.get("cidr")
    if cidr_text is None:
        c.err(prefix + "cidr", "is required")
        return None
    try:
        cidr = addr.parse_prefix(cidr_text)
    except ValueError:
        c.err(prefix + "cidr", f"not a CIDR: {cidr_text!r}")
        return None
    lo, hi, default = BLOCK_SIZES[cidr[0]]
    block = c.integer(spec.get("blockSize"), prefix + "blockSize", lo, hi, default=default)
    if block is not None and block < cidr[2]:
        c.err(prefix + "blockSize", f"{block} is shorter than the pool's own prefix /{cidr[2]}")
    ipip = c.choice(spec.get("ipipMode"), prefix + "ipipMode", MODES, "Never")
    vxlan = c.choice(spec.get("vxlanMode"), prefix + "vxlanMode", MODES, "Never")
    if cidr[0] == 6 and ipip != "Never":
        c.err(prefix + "ipipMode", "IP-in-IP is not supported on an IPv6 pool (use vxlanMode)")
        ipip = "Never"
    if ipip != "Never" and vxlan != "Never":
        c.err(prefix + "vxlanMode", "ipipMode and vxlanMode cannot both be enabled")
    return IPPool(name=name or addr.format_prefix(cidr), cidr=cidr, block_size=block or default,
                  ipip_mode=ipip, vxlan_mode=vxlan,
                  nat_outgoing=c.boolean(spec.get("natOutgoing"), prefix + "natOutgoing", False),
                  disabled=c.boolean(spec.get("disabled"), prefix + "disabled", False),
                  origin=origin)


def parse_ippool(doc, c):
    name = _name(doc, c)
    spec = c.mapping(doc.get("spec"), "spec", required=True)
    return pool_fields(spec, c, "spec.", name=name, origin=c.origin)


def parse_blockaffinity(doc, c):
    name = _name(doc, c)
    spec = c.mapping(doc.get("spec"), "spec", required=True)
    node = c.string(spec.get("node"), "spec.node", required=True, default="") or ""
    cidr = None
    if spec.get("cidr") is None:
        c.err("spec.cidr", "is required")
    else:
        try:
            cidr = addr.parse_prefix(spec.get("cidr"))
        except ValueError:
            c.err("spec.cidr", f"not a CIDR: {spec.get('cidr')!r}")
    state = c.choice(spec.get("state"), "spec.state", AFFINITY_STATES, "confirmed")
    deleted = spec.get("deleted", False)
    if isinstance(deleted, str) and deleted.lower() in ("true", "false"):
        deleted = deleted.lower() == "true"
    elif not isinstance(deleted, bool):
        c.err("spec.deleted", f"must be \"true\" or \"false\" (got {deleted!r})")
        deleted = False
    return BlockAffinity(name=name, node=node, cidr=cidr, state=state, deleted=deleted,
                         origin=c.origin)


def check_pools(pools, problems):
    """Calico refuses overlapping pools: so does kdp (errors on the later of each pair)."""
    seen = []
    for pool in sorted(pools, key=lambda p: (str(p.origin), p.name)):
        for other in seen:
            if addr.prefixes_overlap(pool.cidr, other.cidr):
                problems.error(pool.origin, f"IPPool {pool.name}", "spec.cidr",
                               f"{addr.format_prefix(pool.cidr)} overlaps IPPool {other.name} "
                               f"({addr.format_prefix(other.cidr)})")
        seen.append(pool)


# kind -> (parser, namespaced), as kdp.control.validate.PARSERS holds them
PARSERS = {"IPPool": (parse_ippool, False), "BlockAffinity": (parse_blockaffinity, False)}
