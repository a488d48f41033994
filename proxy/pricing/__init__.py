"""Pricing: an exchange in, its exact cost by kind (Decimal) and the versions that priced it out.

Layers, lowest first: ``catalog`` (the pinned genai-prices snapshot, offline), ``overlay`` (what the
catalog does not model, one dated table), ``overrides`` (company discounts and private models from
``TOKENMETER_PRICES_FILE``), ``engine`` (the ``Pricer`` that stacks them, cached for the hot path).
Pure: no I/O except reading the overrides file when asked. Unknown model -> None, never $0.
"""

from proxy.pricing.engine import Pricer, cost_of
from proxy.pricing.overrides import Overrides, OverridesError, load_overrides
from proxy.pricing.rates import Rate, RateCard, Served

__all__ = [
    "Overrides",
    "OverridesError",
    "Pricer",
    "Rate",
    "RateCard",
    "Served",
    "cost_of",
    "load_overrides",
]
