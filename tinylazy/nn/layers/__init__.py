"""Every layer, one file per family."""
from .linear import Linear, LazyLinear
from .conv import Conv2d, LazyConv2d
from .norm import BatchNorm1d, BatchNorm2d, LazyBatchNorm1d, LazyBatchNorm2d, LayerNorm, LazyLayerNorm
from .embedding import Embedding
from .activation import ReLU, GELU, Sigmoid, Tanh, Softmax, LogSoftmax
from .misc import Identity, Flatten, Unflatten, Dropout
from .pool import MaxPool2d, AvgPool2d, AdaptiveAvgPool2d
from .container import Sequential, ModuleList, ModuleDict
from .loss import CrossEntropyLoss, NLLLoss, MSELoss, BCEWithLogitsLoss

__all__ = ("Linear", "LazyLinear", "Conv2d", "LazyConv2d", "BatchNorm1d", "BatchNorm2d", "LazyBatchNorm1d",
           "LazyBatchNorm2d", "LayerNorm", "LazyLayerNorm", "Embedding", "ReLU", "GELU", "Sigmoid", "Tanh",
           "Softmax", "LogSoftmax", "Identity", "Flatten", "Unflatten", "Dropout", "MaxPool2d", "AvgPool2d",
           "AdaptiveAvgPool2d", "Sequential", "ModuleList", "ModuleDict", "CrossEntropyLoss", "NLLLoss",
           "MSELoss", "BCEWithLogitsLoss")
