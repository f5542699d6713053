"""Meta-features of a dataset (class count, durations, cheap acoustics), computed at run time and offline."""
