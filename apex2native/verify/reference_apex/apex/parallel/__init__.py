"""Stand-ins for `apex.parallel`: torch DDP and SyncBatchNorm under apex's names."""

from __future__ import annotations

import torch

_APEX_ONLY_KWARGS = (
    "message_size",
    "delay_allreduce",
    "shared_param",
    "allreduce_trigger_params",
    "retain_allreduce_buffers",
    "allreduce_always_fp32",
    "num_allreduce_streams",
    "allreduce_communicators",
    "gradient_average",
    "gradient_predivide_factor",
    "gradient_average_split_factor",
    "prof",
)


class DistributedDataParallel(torch.nn.parallel.DistributedDataParallel):
    """torch DDP accepting (and ignoring) apex-only keyword arguments."""

    def __init__(self, module, *args, **kwargs):
        for key in _APEX_ONLY_KWARGS:
            kwargs.pop(key, None)
        super().__init__(module, *args, **kwargs)


SyncBatchNorm = torch.nn.SyncBatchNorm


def convert_syncbn_model(module, process_group=None, channel_last=False):
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)
