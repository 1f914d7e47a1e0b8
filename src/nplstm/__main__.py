"""``python -m nplstm`` (and ``mpiexec -n N python -m mpi4py -m nplstm train --distributed``)."""
import sys

from .cli import main

sys.exit(main())
