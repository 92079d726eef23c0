"""``python -m archgraph``: the same command as ``archgraph``; what ``torchrun -m archgraph`` runs.

Each process of ``torchrun --nproc_per_node=N -m archgraph search ...`` runs the ordinary command;
the search and training engines join the process group themselves (see docs/distributed.md).
"""

import sys

from archgraph.cli import main

if __name__ == "__main__":
    sys.exit(main())
