"""Plain, slow, obvious reference implementations that tests check the fast core against.

Modules: lpm (longest-prefix match by scanning every rule), service (the
service decision for a new flow, read off the validated model: kube-proxy's
semantics as kdp implements them).
"""
