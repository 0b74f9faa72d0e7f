"""Loss modules: each calls the function of the same name in `nn.functional` with its stored options."""
from .. import functional as F
from ..module import Module


class _Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"{type(self).__name__}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.reduction = reduction


class CrossEntropyLoss(_Loss):
    """-log softmax(logits)[target] (integer class targets), optionally with label smoothing."""
    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        self.weight, self.ignore_index, self.label_smoothing = weight, ignore_index, label_smoothing

    def forward(self, input, target):
        extra = {}
        if self.weight is not None:
            extra["weight"] = self.weight
        if self.ignore_index != -100:
            extra["ignore_index"] = self.ignore_index
        if self.label_smoothing:
            extra["label_smoothing"] = self.label_smoothing
        return F.cross_entropy(input, target, reduction=self.reduction, **extra)


class NLLLoss(_Loss):
    """-input[target] (input holds log-probabilities)."""
    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(reduction)
        self.weight, self.ignore_index = weight, ignore_index

    def forward(self, input, target):
        extra = {}
        if self.weight is not None:
            extra["weight"] = self.weight
        if self.ignore_index != -100:
            extra["ignore_index"] = self.ignore_index
        return F.nll_loss(input, target, reduction=self.reduction, **extra)


class MSELoss(_Loss):
    """(input - target)**2."""
    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits: max(x, 0) - x*y + log(1 + exp(-|x|))."""
    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        self.weight, self.pos_weight = weight, pos_weight

    def forward(self, input, target):
        extra = {}
        if self.weight is not None:
            extra["weight"] = self.weight
        if self.pos_weight is not None:
            extra["pos_weight"] = self.pos_weight
        return F.binary_cross_entropy_with_logits(input, target, reduction=self.reduction, **extra)
