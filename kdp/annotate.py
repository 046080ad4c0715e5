"""`kdp replay --annotate`: each written packet carries what kdp decided as a pcapng
packet comment (opt_comment), which Wireshark shows beside the packet:

    kdp: forward forwarded | service shop/web:http | nat 10.244.1.50:41002 > 10.96.0.10:80
    => 10.244.1.50:41002 > 10.244.1.10:8080 | out web-1

The comments are made from the verdict log's lines (kdp/_fast/verdictlog.pyx), so they
say what `--log` says: verdict and reason, the Service, the tuple before and after NAT
when NAT changed it, the policy decisions, the tunnel, the egress port. The log is
written to memory for every packet; with `--log` as well, the lines the log keeps are
copied to its file from there.
"""
import io
import json


def _endpoint(addr, port):
    if addr is None:
        return "?"
    text = f"[{addr}]" if ":" in addr and port is not None else addr
    return f"{text}:{port}" if port is not None else text


def comment(line):
    """The comment text of one verdict log line (a dict)."""
    parts = [f"kdp: {line['verdict']} {line['reason']}"]
    if line.get("service"):
        parts.append(f"service {line['service']}")
    orig = line.get("orig")
    if orig is not None:
        before = (orig["src"], orig["sport"], orig["dst"], orig["dport"])
        after = (line["src"], line["sport"], line["dst"], line["dport"])
        if before != after and line["verdict"] == "forward":
            parts.append(f"nat {_endpoint(before[0], before[1])} > {_endpoint(before[2], before[3])} => "
                         f"{_endpoint(after[0], after[1])} > {_endpoint(after[2], after[3])}")
    policy = line.get("policy")
    if policy:
        parts.append("policy " + "; ".join(f"{side} {what}" for side, what in policy.items() if what))
    tunnel = line.get("tunnel")
    if tunnel:
        parts.append(f"tunnel {tunnel['type']} {tunnel['src']} > {tunnel['dst']}")
    if line.get("out_port"):
        parts.append(f"out {line['out_port']}")
    return " | ".join(parts)


class Annotations:
    """The verdict log of a replay, in memory, turned into packet comments batch by batch.
    `log` (a verdict log the pipeline fills) goes to Dataplane.process; `take(...)` after it."""

    def __init__(self, dataplane, batch_size, user_log=None):
        self.buffer = io.BytesIO()
        self.log = dataplane.verdict_log(self.buffer, batch_size)
        self.user_log = user_log            # a LogFile for --log, or None

    def take(self, batch, first_frame, keep=None):
        """The comments of the batch's packets (a list, one per packet), after writing the
        lines `keep` selects (None: all) to the user's log."""
        self.buffer.seek(0)
        self.buffer.truncate()
        self.log.write(batch, first_frame=first_frame)
        lines = self.buffer.getvalue().splitlines()
        if self.user_log is not None:
            chosen = lines if keep is None else [l for l, k in zip(lines, keep) if k]
            if chosen:
                self.user_log.write(b"\n".join(chosen) + b"\n")
        return [comment(json.loads(line)) for line in lines]
