"""Search strategies: each module registers one :class:`archgraph.strategies.base.Strategy` subclass."""
