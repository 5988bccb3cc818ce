"""npctr's layers, mirroring ``deepctr.layers``."""
from .base import Layer, NoCacheError
from .activation import Activation, Dice, PReLU, activation_layer, sigmoid, softmax, relu, ACTIVATIONS
from .normalization import BatchNormalization
from .dense import Dense
from .dropout import Dropout
from .core import DNN, LocalActivationUnit, PredictionLayer
from .embedding import Embedding
from .sequence import SequencePoolingLayer, AttentionSequencePoolingLayer, sequence_mask
from .rnn import DynamicGRU
from .auxiliary import AuxiliaryLoss

__all__ = ["Layer", "NoCacheError", "Activation", "Dice", "PReLU", "activation_layer", "BatchNormalization", "Dense",
           "Dropout", "DNN", "LocalActivationUnit", "PredictionLayer", "Embedding",
           "SequencePoolingLayer", "AttentionSequencePoolingLayer", "sequence_mask", "DynamicGRU", "AuxiliaryLoss", "sigmoid", "softmax", "relu",
           "ACTIVATIONS"]
