"""archgraph: graph-based neural architecture search for semantic segmentation.

Everything is a graph first::

    >>> from archgraph import build_space, compile_graph, decode
    >>> g = build_space("dcss", {"layers": 2, "base_channels": 8})   # a networkx.DiGraph
    >>> net = compile_graph(g)          # supernet, continuous relaxation (DCNAS Eq. 1-4)
    >>> scores = net.arch.scores()      # softmax(alpha), softmax(beta) per choice label
    >>> arch = decode(g, scores["ops"], scores["inputs"])   # argmax ops + BFS over top-k inputs
    >>> fixed = compile_graph(arch)     # an ordinary network

A hand-made architecture is named node by node (every choice point it keeps, see
:func:`archgraph.core.decode.derive_by_name`)::

    arch = derive_by_name(g, ops={"L2_s4": "mbconv_k3_r3", ...}, inputs={"L2_s4": ["stem_s4", "L1_s8"], ...})

See docs/architecture.md for the data flow.
"""

from pathlib import Path as _Path

from archgraph import sourcetree as _sourcetree

_sourcetree.install(_Path(__file__).resolve().parent)  # before anything imports archgraph.spaces/strategies

from archgraph.core.compile import CompiledNetwork, compile_graph, transfer_weights
from archgraph.core.decode import decode, derive_by_name, sample_architecture
from archgraph.errors import ArchgraphError, CheckpointError, ConfigError, GraphError, RegistryError
from archgraph.core.graph import load as load_graph
from archgraph.core.graph import save as save_graph
from archgraph.core.graph import validate
from archgraph.core.spaces_api import build_space

__version__ = "0.1.0"

__all__ = [
    "ArchgraphError",
    "CheckpointError",
    "CompiledNetwork",
    "ConfigError",
    "GraphError",
    "RegistryError",
    "build_space",
    "compile_graph",
    "decode",
    "derive_by_name",
    "load_graph",
    "sample_architecture",
    "save_graph",
    "transfer_weights",
    "validate",
]
