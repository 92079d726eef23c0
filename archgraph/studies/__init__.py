"""Studies made of many runs: ``compare`` (strategies head to head against baselines), ``correlate``
(supernet vs stand-alone ranking) and the ``runcache`` both share. Built on the engine."""
