"""Meta-features of a dataset (class counts, durations, cheap acoustics), computed at run time and offline."""

from metafeatures.features import (
    METAFEATURES,
    VERSION,
    compute_metafeatures,
    compute_metafeatures_detailed,
    describe,
)

__all__ = ["METAFEATURES", "VERSION", "compute_metafeatures", "compute_metafeatures_detailed", "describe"]
