"""Search strategies: each module registers one :class:`strategies.base.Strategy` subclass."""
