"""Which rows of a demo model's tied embedding have collapsed into one direction (see the model card):
one definition, used by train.py (to re-spread them) and probe_copy.py (to report their share)."""

import numpy as np


def collapsed_rows(table, threshold=0.95):
    """Boolean mask of the rows of a [vocab][hidden] table whose cosine with the common direction (the
    mean unit vector of the rows above the 60th norm percentile) exceeds `threshold`."""
    table = np.asarray(table, dtype=np.float32)
    norms = np.linalg.norm(table, axis=1)
    unit = table / norms[:, None]
    common = unit[norms > np.quantile(norms, 0.6)].mean(0)
    common /= np.linalg.norm(common)
    return (unit @ common) > threshold
