"""`apex.fp16_utils.loss_scaler`: the classes real `FP16_Optimizer.state_dict()` pickles.

apex saved its loss scaler object itself into checkpoints; unpickling one needs a class at
this path with these attribute names (pickle restores them without calling `__init__`).
"""

from __future__ import annotations


class LossScaler:
    def __init__(self, scale: float = 1) -> None:
        self.cur_scale = scale

    @property
    def loss_scale(self) -> float:
        return self.cur_scale


class DynamicLossScaler:
    def __init__(
        self, init_scale: float = 2**32, scale_factor: float = 2.0, scale_window: int = 1000
    ) -> None:
        self.cur_scale = init_scale
        self.cur_iter = 0
        self.last_overflow_iter = -1
        self.scale_factor = scale_factor
        self.scale_window = scale_window

    @property
    def loss_scale(self) -> float:
        return self.cur_scale
