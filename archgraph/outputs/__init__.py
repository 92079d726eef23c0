"""What a person looks at: Graphviz drawings (``render``), matplotlib figures (``plots``) and the
search run's HTML page (``report``). Built on the core; the engine calls them at the end of a run."""
