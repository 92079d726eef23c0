"""The run engine: the search loop, stand-alone training, evaluation, checkpoints, multi-process runs
and export. Built on the core and the registry; it knows no particular space or strategy."""
