import os
import sys
from pathlib import Path

import torch

# Tests run single-threaded: predictable timing on the 2-core CI machine.
torch.set_num_threads(1)
os.environ.setdefault("TQDM_DISABLE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
