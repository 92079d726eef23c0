"""The graph core: what a search space *is* and how it becomes a network.

``graph`` (schema, validation, YAML), ``choices`` (choice points and the alpha/beta store), ``ops``
(the operator registry), ``relaxation`` (what runs at a choice point), ``compile`` (graph -> module
with a static plan), ``decode`` (scores -> derived graph), ``costs`` (FLOPs, parameters),
``archstats`` (how decided the architecture parameters are), ``archfile`` (loading architecture
files against their space), ``registry`` / ``spaces_api`` (spaces, strategies and presets by name).

The core imports nothing above it: no engine, study, output or command module, and no particular
space or strategy (those are reached by name through the registry). docs/architecture.md has the map.
"""
