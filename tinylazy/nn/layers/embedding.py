"""`Embedding`: a lookup table of num_embeddings vectors of size embedding_dim, indexed by integer input."""
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter
from .linear import _check_size


class Embedding(Module):
    """out[...] = weight[x[...]]; weight ~ N(0, 1), with the padding_idx row zero (and never updated)."""
    needs_float = False

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, *, device=None, dtype=None,
                 weight_init=None, _weight=None):
        super().__init__()
        _check_size("Embedding", "num_embeddings", num_embeddings, allow_none=False)
        _check_size("Embedding", "embedding_dim", embedding_dim, allow_none=False)
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding: padding_idx={padding_idx} must be within num_embeddings={num_embeddings}")
            padding_idx %= num_embeddings
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        if _weight is not None:
            self.weight = Parameter(_weight)
            return
        self.weight = Parameter.lazy((num_embeddings, embedding_dim))
        self.setup_lazy(device, dtype, weight_init=weight_init)

    def parameter_shapes(self):
        return {"weight": (self.num_embeddings, self.embedding_dim)}

    def reset_parameters(self):
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.array[self.padding_idx] = 0
            self.weight._vc[0] += 1

    def forward(self, input):
        return F.embedding(input, self.weight, self.padding_idx)

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None):
        rows, dim = embeddings.shape
        m = cls(rows, dim, padding_idx=padding_idx, _weight=embeddings.detach().clone())
        m.weight.requires_grad = not freeze
        return m
