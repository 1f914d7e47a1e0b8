"""nplstm.LSTM against torch.nn.LSTM and ONNX Runtime; the code lives in nplstm.bench (also `nplstm bench`).

    python benchmarks/bench_lstm.py --threads 1 --write     # updates benchmarks/RESULTS.md
"""
import os
import sys

from nplstm.bench import main

if __name__ == "__main__":
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    sys.exit(main())
