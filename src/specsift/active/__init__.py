"""Active learning to find rare objects: query strategies, the resumable loop, the label
database, the simulated-oracle benchmark and the labelling web page (``specsift label``)."""
