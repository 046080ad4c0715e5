"""The control layer: manifests -> model -> validation -> compiled tables.

    from kdp.control import Cluster, compile
    cluster = Cluster.load(["snapshot/"], node="node-1")   # ConfigError if invalid
    tables = compile(cluster)                               # CompiledTables
    removed = tables.update_endpoints(slice_mapping)        # {svc_port id: [backend ids]}

Modules: loader (files -> raw objects), validate (raw -> model objects, errors
naming file/object/field), model (the objects), cluster (a snapshot seen from
one node), compile (model -> tables), tables (CompiledTables + incremental
updates), routes (this node's route records), addr (address helpers).
"""
from kdp.control.cluster import Cluster
from kdp.control.compile import compile_cluster as compile
from kdp.control.routes import NodeRoute
from kdp.control.tables import CompiledTables

__all__ = ["Cluster", "CompiledTables", "NodeRoute", "compile"]
