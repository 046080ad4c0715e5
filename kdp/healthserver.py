"""kube-proxy's health check server, for `kdp attach`.

For each Service with a healthCheckNodePort (externalTrafficPolicy: Local), kdp listens
on that TCP port in its own network namespace (the node's: where the host port's
packets arrive) and answers as kube-proxy's health server does: HTTP 200 when this node
has ready local endpoints for the Service, 503 otherwise, with a JSON body naming the
Service and the local endpoint count. The answer is computed at each request from the
tables in use, so a reload changes it at once. The pipeline delivers these packets to
the host port (reason svc_health_check): a load balancer's probe reaches the server
through kdp.
"""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kdp.errors import KdpError


def health_checks(dp):
    """{nodePort: (service name, local endpoints)} of the tables in use."""
    tables = dp.tables
    out = {}
    if tables is None:
        return out
    for row in tables.services_view():
        hc = row["healthCheck"]
        if hc:
            name = row["name"].rsplit(":", 1)[0]
            count = out.get(hc["nodePort"], (name, 0))[1]
            out[hc["nodePort"]] = (name, max(count, hc["localEndpoints"]))
    return out


class HealthServers:
    """One HTTP server a healthCheckNodePort; `update()` after a reload opens new ports."""

    def __init__(self, dp, address="0.0.0.0"):
        self.dp, self.address = dp, address
        self.servers = {}

    def update(self):
        for port in health_checks(self.dp):
            if port not in self.servers:
                self._start(port)

    def _start(self, port):
        dp = self.dp

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                name, count = health_checks(dp).get(port, (None, 0))
                ns, _, svc = (name or "/").partition("/")
                body = json.dumps({"service": {"namespace": ns, "name": svc}, "localEndpoints": count,
                                   "serviceProxyHealthy": True}).encode()
                self.send_response(200 if count else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def server_bind(self):          # (no getfqdn: a node namespace may have no DNS)
                self.socket.bind(self.server_address)
                self.server_address = self.socket.getsockname()
        try:
            server = Server((self.address, port), Handler)
        except OSError as exc:
            raise KdpError(f"healthCheckNodePort {port}: cannot listen: {exc.strerror or exc}") from None
        threading.Thread(target=server.serve_forever, name=f"kdp-health-{port}", daemon=True).start()
        self.servers[port] = server

    def close(self):
        for server in self.servers.values():
            server.shutdown()
            server.server_close()
