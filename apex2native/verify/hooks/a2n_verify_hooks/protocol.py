"""Names shared by the harness and the injected hooks (no torch import here)."""

ENV_DIR = "A2N_VERIFY_DIR"
ENV_SIDE = "A2N_VERIFY_SIDE"
ENV_STEPS = "A2N_VERIFY_STEPS"
ENV_SEED = "A2N_VERIFY_SEED"
ENV_DEVICE = "A2N_VERIFY_DEVICE"
ENV_AMP_OFF = "A2N_VERIFY_AMP_OFF"
ENV_SKIP_MASK = "A2N_VERIFY_SKIP_MASK"
ENV_RESUME = "A2N_VERIFY_RESUME"

LOADED_SUFFIX = ".loaded"
RECORD_SUFFIX = ".jsonl"


def record_name(side: str, rank: str, pid: int) -> str:
    """File name of one process's JSON-lines record."""
    return f"{side}.rank{rank}.pid{pid}{RECORD_SUFFIX}"


def loaded_name(side: str, pid: int) -> str:
    """Marker written when the hooks were installed in a process."""
    return f"{side}.pid{pid}{LOADED_SUFFIX}"
