"""`tinylazy.nn.functional` (import as F): the stateless neural-network ops, PyTorch's names.

The ops themselves live in `tinylazy.ops` (one Function per op); this module only gathers them."""
from ..ops.unary import relu, sigmoid, tanh                            # noqa: F401
from ..ops.activation import *                                         # noqa: F401,F403
from ..ops.loss import *                                               # noqa: F401,F403
from ..ops.linear import *                                             # noqa: F401,F403
from ..ops.conv import *                                               # noqa: F401,F403
from ..ops.pool import *                                               # noqa: F401,F403
from ..ops.norm import *                                               # noqa: F401,F403
from ..ops.embedding import *                                          # noqa: F401,F403
