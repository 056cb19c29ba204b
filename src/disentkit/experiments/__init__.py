"""Experiments over many runs: sweep expansion and execution (:mod:`.sweep`) and aggregation of
results into mean ± std tables and plots (:mod:`.aggregate`)."""
