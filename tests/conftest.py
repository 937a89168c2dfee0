import os

import matplotlib

matplotlib.use("agg")
os.environ.setdefault("MPLBACKEND", "agg")
