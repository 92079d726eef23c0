"""Search spaces: each module registers a builder from hyper-parameters to a supernet graph."""
