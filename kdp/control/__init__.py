"""The control layer: manifests -> model -> validation -> compiled tables.

    from kdp.control import Cluster, compile
    from kdp.control.node import compile_node
    cluster = Cluster.load(["snapshot/"], node="node-1")   # ConfigError if invalid
    tables = compile(cluster)                               # CompiledTables
    removed = tables.update_endpoints(slice_mapping)        # {svc_port id: [backend ids]}
    node = compile_node(cluster, ports)                     # NodeTables: what kdp.dataplane runs

Modules: loader (files -> raw objects), validate (raw -> model objects, errors
naming file/object/field), model (the objects), cluster (a snapshot seen from
one node), compile (model -> service tables), tables (CompiledTables +
incremental updates), backends (which endpoints serve a service-port, their
C arrays; shared by compile and tables), routes (this node's NodeRoute
records), calico (Calico's IPPool and BlockAffinity objects), overlay (the
network between the nodes: addresses, blocks, tunnels, MTUs, from NodeConfig and
Calico's / flannel's annotations), node (node assembly: compile_node ->
NodeTables, everything a node's pipeline runs on, and what a reload or an
endpoint update flushes), addr (address helpers).
"""
from kdp.control.cluster import Cluster
from kdp.control.compile import compile_cluster as compile
from kdp.control.routes import NodeRoute
from kdp.control.tables import CompiledTables

__all__ = ["Cluster", "CompiledTables", "NodeRoute", "compile"]
