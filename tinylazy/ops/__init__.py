"""All tensor ops, one file per family. Each family lists in `METHODS` the ops that are also Tensor
methods (tensor.py binds them); every public op is importable from here and from `tinylazy`."""
from . import elementwise, unary, reduce, shape, linalg, activation, loss, linear, conv, pool, norm, embedding

# the family modules, kept before the star imports below (which bring functions named `linear` and
# `embedding` that shadow their modules' names)
FAMILIES = (elementwise, unary, reduce, shape, linalg, activation, loss, linear, conv, pool, norm, embedding)
from .elementwise import *      # noqa: F401,F403
from .unary import *            # noqa: F401,F403
from .reduce import *           # noqa: F401,F403
from .shape import *            # noqa: F401,F403
from .linalg import *           # noqa: F401,F403
from .activation import *       # noqa: F401,F403
from .loss import *             # noqa: F401,F403
from .linear import *           # noqa: F401,F403
from .conv import *             # noqa: F401,F403
from .pool import *             # noqa: F401,F403
from .norm import *             # noqa: F401,F403
from .embedding import *        # noqa: F401,F403

METHODS = tuple(name for family in FAMILIES for name in family.METHODS)
