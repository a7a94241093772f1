"""How a dataset is validated (:class:`ValidationOptions`): below both the validator and its report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from shared.validation.limits import DEFAULT_BASE_MODEL

ROLES: Final = ("training", "validation")


@dataclass(frozen=True, slots=True)
class ValidationOptions:
    """How to validate: which role the file plays, for which base model, and report settings.

    ``max_errors`` caps the *listed* errors and, separately, the listed warnings; every issue
    is still counted in ``error_counts``. ``size_bytes`` is the object size when known up
    front (GCS metadata, ``os.stat``); otherwise the bytes read are used.
    """

    role: str = "training"
    """``training`` or ``validation`` (checked at construction)."""
    base_model: str = DEFAULT_BASE_MODEL
    epochs: int | None = None
    adapter_size: int | None = None
    max_errors: int = 100
    size_bytes: int | None = None
    source_name: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be 'training' or 'validation', got {self.role!r}")
        if self.max_errors < 0:
            raise ValueError(f"max_errors must be >= 0, got {self.max_errors}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.size_bytes is not None and self.size_bytes < 0:
            raise ValueError(f"size_bytes must be >= 0, got {self.size_bytes}")
