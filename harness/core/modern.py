"""Modern recurrent cells, each in its own module under harness.core.zoo (this module keeps their
names where they were):

lru      (Orvieto et al. 2023) a complex diagonal linear recurrence: harness.core.zoo.lru
indrnn   (Li et al. 2018) h_t = act(W x_t + u ⊙ h_{t-1} + b): harness.core.zoo.indrnn
minimal  (minimalRNN, Chen, Pennington & Schoenholz 2018): harness.core.zoo.minimal
"""
from harness.core.zoo.hidden import HiddenNet
from harness.core.zoo.indrnn import IndRNNNet
from harness.core.zoo.lru import LRUNet
from harness.core.zoo.minimal import MinimalNet

__all__ = ["HiddenNet", "IndRNNNet", "LRUNet", "MinimalNet"]
