"""Cost estimates of tuning jobs from the dated price table ``shared/pricing.yaml``.

Vertex bills supervised tuning per training token: the dataset's tokens times the epochs
(https://cloud.google.com/vertex-ai/generative-ai/pricing). The validator already estimates the
dataset's tokens (``record.validation.stats.billing.dataset_tokens``); this module multiplies
them by the epochs (or the table's ``default_epochs`` when tuning.yaml leaves them to the
service, marked ``epochs_assumed``) and by the base model's price per million training tokens.
A deployment replaces prices model by model with ``SFTPILOT_PRICING_FILE`` (same YAML shape).

Example:
    >>> table = PriceTable("src", "2025-10-01", 3, {"gemini-2.5-flash": 5.0})
    >>> estimate_cost(100_000, 2, "gemini-2.5-flash", table).cost_usd
    1.0
    >>> table.price_per_million("publishers/google/models/gemini-2.5-flash-001")
    5.0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from shared.errors import SettingsError
from shared.records import JSON


@dataclass(frozen=True)
class PriceTable:
    """USD per million training tokens per base model, with where the numbers come from."""

    source: str
    as_of: str
    default_epochs: int
    models: Mapping[str, float] = field(default_factory=dict)

    def price_per_million(self, base_model: str) -> float | None:
        """The price of a base model: exact name, else the longest table name it starts with.

        Resource paths (``publishers/google/models/X``) and version suffixes (``-001``) resolve to
        the table's model names; an unknown model has no price (None).
        """
        name = base_model.rsplit("/", 1)[-1]
        if name in self.models:
            return self.models[name]
        matches = [m for m in self.models if name.startswith(m)]
        return self.models[max(matches, key=len)] if matches else None


def _parse_table(data: Any, where: str) -> tuple[JSON, dict[str, float]]:
    if not isinstance(data, Mapping) or not isinstance(data.get("models", {}), Mapping):
        raise SettingsError("SFTPILOT_PRICING_FILE", where, "a YAML mapping with a 'models' mapping")
    prices: dict[str, float] = {}
    for model, price in (data.get("models") or {}).items():
        if isinstance(price, bool) or not isinstance(price, int | float) or price < 0:
            raise SettingsError("SFTPILOT_PRICING_FILE", where, f"models.{model} as a price >= 0 (got {price!r})")
        prices[str(model)] = float(price)
    return dict(data), prices


def load_price_table(override_path: str = "") -> PriceTable:
    """The shipped table, with the models of ``override_path`` (if given) replacing its own.

    Raises:
        SettingsError: the override file is missing or malformed (named in the message).
    """
    shipped = yaml.safe_load(resources.files("shared").joinpath("pricing.yaml").read_text())
    meta, prices = _parse_table(shipped, "shared/pricing.yaml")
    if override_path:
        try:
            text = Path(override_path).read_text()
        except OSError as exc:
            raise SettingsError("SFTPILOT_PRICING_FILE", override_path, f"a readable file ({exc.strerror})") from exc
        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise SettingsError("SFTPILOT_PRICING_FILE", override_path, f"valid YAML ({exc})") from exc
        override_meta, override_prices = _parse_table(loaded, override_path)
        prices.update(override_prices)
        meta = {**meta, **{k: v for k, v in override_meta.items() if k in ("source", "as_of", "default_epochs")}}
    return PriceTable(
        source=str(meta.get("source", "")),
        as_of=str(meta.get("as_of", "")),
        default_epochs=int(meta.get("default_epochs") or 1),
        models=prices,
    )


@dataclass(frozen=True)
class CostEstimate:
    """What a job is expected to cost, before it is submitted."""

    base_model: str
    dataset_tokens: int
    epochs: int
    epochs_assumed: bool
    """True when tuning.yaml left epochs to the service and the table's default was used."""
    billable_tokens: int
    usd_per_million: float | None
    cost_usd: float | None
    """None when the base model has no price in the table (budgets in USD then cannot pass)."""
    price_source: str
    price_as_of: str

    def to_dict(self) -> JSON:
        """JSON form, stored as ``record.validation.cost.estimate``."""
        return {
            "base_model": self.base_model,
            "dataset_tokens": self.dataset_tokens,
            "epochs": self.epochs,
            "epochs_assumed": self.epochs_assumed,
            "billable_tokens": self.billable_tokens,
            "usd_per_million": self.usd_per_million,
            "cost_usd": self.cost_usd,
            "price_source": self.price_source,
            "price_as_of": self.price_as_of,
        }


def estimate_cost(dataset_tokens: int, epochs: int | None, base_model: str, table: PriceTable) -> CostEstimate:
    """``dataset_tokens x epochs`` billable tokens at the base model's price."""
    used_epochs = epochs if epochs else table.default_epochs
    billable = dataset_tokens * used_epochs
    price = table.price_per_million(base_model)
    cost = None if price is None else round(billable * price / 1_000_000, 6)
    return CostEstimate(
        base_model=base_model,
        dataset_tokens=dataset_tokens,
        epochs=used_epochs,
        epochs_assumed=not epochs,
        billable_tokens=billable,
        usd_per_million=price,
        cost_usd=cost,
        price_source=table.source,
        price_as_of=table.as_of,
    )


def cost_of_tokens(billable_tokens: int, usd_per_million: float | None) -> float | None:
    """USD for a number of billable tokens at a price (None without a price)."""
    return None if usd_per_million is None else round(billable_tokens * usd_per_million / 1_000_000, 6)
