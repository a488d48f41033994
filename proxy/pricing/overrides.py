"""Company price overrides: negotiated discounts and private or corrected model prices (TOML).

The file (``TOKENMETER_PRICES_FILE``) holds two kinds of entries, each dated and sourced::

    [[discount]]                  # percent off, applied after every other rule
    provider = "anthropic"        # "anthropic" | "openai"
    models = "*"                  # "*", a glob such as "claude-opus-*", or a list of them
    percent = 12
    effective_from = 2026-01-01
    effective_until = 2026-12-31  # optional, last day included
    source = "MSA 2026 amendment 3"

    [[model]]                     # a private/brand-new model, or a correction of the catalog
    provider = "anthropic"
    name = "claude-private-x"
    input = "3"                   # $/MTok; output required too; cache_read, cache_write_5m,
    output = "15"                 # cache_write_1h ($/MTok) and web_search ($/1000) optional:
    effective_from = 2026-11-01   # missing ones follow the overlay's fallback rules
    source = "vendor quote 2026-10-28"

Contract: ``load_overrides`` validates the whole file and raises one ``OverridesError`` listing
every problem as ``<file>:<line>: [[kind]] <problem>``, the line of the field at fault (or of
the entry's header when a field is missing). A ``[[model]]`` entry replaces the
catalog's rates for that model from its ``effective_from`` (the latest started entry wins);
batch and US-geo modifiers still apply to it, catalog variants (fast mode, OpenAI tiers) do not.
Active discounts compound. Dates are UTC days. Errors: ``OverridesError(ValueError)``.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from proxy.pricing.catalog import normalize_model
from proxy.pricing.rates import Rate
from proxy.usage import WEB_SEARCH

PROVIDERS = ("anthropic", "openai")
PRICE_FIELDS: dict[str, str] = {  # TOML field -> our kind
    "input": "input",
    "output": "output",
    "cache_read": "cache_read",
    "cache_write_5m": "cache_write_5m",
    "cache_write_1h": "cache_write_1h",
    "web_search": WEB_SEARCH,
}
MODEL_FIELDS = ("provider", "name", *PRICE_FIELDS, "effective_from", "source")
DISCOUNT_FIELDS = ("provider", "models", "percent", "effective_from", "effective_until", "source")
_REQUIRED = {
    "model": ("provider", "name", "input", "output", "effective_from", "source"),
    "discount": ("provider", "models", "percent", "effective_from", "source"),
}
_HEADER = re.compile(r"^\s*\[\[\s*([A-Za-z0-9_-]+)\s*\]\]")
_TOML_LINE = re.compile(r"line (\d+)")


class OverridesError(ValueError):
    """The overrides file is unreadable or invalid; ``errors`` lists every problem found."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True, slots=True)
class ModelOverride:
    provider: str
    name: str
    prices: Mapping[str, Decimal]  # our kind -> $/MTok ($/1000 for web_search)
    effective_from: date
    source: str
    where: str  # "<file>:<line>"

    def rates(self) -> dict[str, Rate]:
        note = f"override '{self.source}' from {self.effective_from.isoformat()} ({self.where})"
        return {kind: Rate(price, note) for kind, price in self.prices.items()}


@dataclass(frozen=True, slots=True)
class Discount:
    provider: str
    models: tuple[str, ...]  # lower-case globs
    percent: Decimal
    effective_from: date
    effective_until: date | None
    source: str
    where: str

    def covers(self, provider: str, names: Iterable[str], on: date) -> bool:
        return (
            provider == self.provider
            and self.effective_from <= on
            and (self.effective_until is None or on <= self.effective_until)
            and any(fnmatchcase(name, glob) for name in names for glob in self.models)
        )

    def apply(self, rates: Mapping[str, Rate]) -> dict[str, Rate]:
        factor = (100 - self.percent) / 100
        since = self.effective_from.isoformat()
        note = f"-{self.percent}% override discount '{self.source}' from {since} ({self.where})"
        return {kind: rate.scaled(factor, note) for kind, rate in rates.items()}


class Overrides:
    """The validated contents of one overrides file (or none: ``Overrides()``)."""

    def __init__(
        self,
        models: Sequence[ModelOverride] = (),
        discounts: Sequence[Discount] = (),
        digest: str | None = None,
    ) -> None:
        self.discounts = tuple(discounts)
        self.digest = digest  # sha256[:12] of the file bytes, recorded in every price version
        self._models: dict[tuple[str, str], list[ModelOverride]] = {}
        for entry in sorted(models, key=lambda entry: entry.effective_from):
            self._models.setdefault((entry.provider, entry.name), []).append(entry)

    def model_for(self, provider: str, name: str, on: date) -> ModelOverride | None:
        """The latest ``[[model]]`` entry for (provider, name) already in effect on ``on``."""
        started = [e for e in self._models.get((provider, name), ()) if e.effective_from <= on]
        return started[-1] if started else None

    def applies_to(self, provider: str, name: str, on: date) -> bool:
        """Whether a ``[[model]]`` entry or a discount changes (provider, name)'s price on
        ``on``: the company's price, not the list price (``report reconcile`` says so)."""
        if self.model_for(provider, name, on) is not None:
            return True
        return any(d.covers(provider, (name,), on) for d in self.discounts)

    def discounted(
        self, rates: Mapping[str, Rate], provider: str, names: Iterable[str], on: date
    ) -> dict[str, Rate]:
        """``rates`` after every discount covering (provider, any of ``names``) on ``on``."""
        result = dict(rates)
        names = tuple(names)
        for discount in self.discounts:
            if discount.covers(provider, names, on):
                result = discount.apply(result)
        return result


def load_overrides(path: Path) -> Overrides:
    """Read and validate an overrides file; raise ``OverridesError`` listing every problem."""
    raw = _read(path)
    text = raw.decode("utf-8", errors="replace").removeprefix("\ufeff")  # a BOM (Windows editors)
    data = _parse(path, text)
    checker = _Checker(path, text)
    checker.unknown_tables(data)
    models = [m for i, e in checker.entries(data, "model") if (m := checker.model(i, e))]
    discounts = [d for i, e in checker.entries(data, "discount") if (d := checker.discount(i, e))]
    checker.check_duplicates(models)
    if checker.errors:
        raise OverridesError(checker.errors)
    return Overrides(models, discounts, hashlib.sha256(raw).hexdigest()[:12])


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise OverridesError([f"{path}: cannot read prices file: {exc.strerror}"]) from exc


def _parse(path: Path, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_LINE.search(str(exc))
        line = f":{found.group(1)}" if found else ""
        raise OverridesError([f"{path}{line}: invalid TOML: {exc}"]) from exc


class _Checker:
    """Validates entries one field at a time, collecting every error with its line number."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.errors: list[str] = []
        self._headers: dict[str, list[int]] = {}
        for number, line in enumerate(self.lines, start=1):
            if found := _HEADER.match(line):
                self._headers.setdefault(found.group(1), []).append(number)

    def unknown_tables(self, data: dict[str, Any]) -> None:
        for key in sorted(data.keys() - _REQUIRED.keys()):
            self.errors.append(
                f"{self.path}:{self._line(key, 0)}: unknown table '{key}' "
                "(expected [[model]] or [[discount]])"
            )

    def entries(self, data: dict[str, Any], kind: str) -> list[tuple[int, dict[str, Any]]]:
        """The ``[[kind]]`` tables of the file, each with the line number of its header."""
        value = data.get(kind, [])
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self.errors.append(
                f"{self.path}:{self._line(kind, 0)}: '{kind}' must be [[{kind}]] tables"
            )
            return []
        return [(self._line(kind, index), item) for index, item in enumerate(value)]

    def model(self, line: int, entry: dict[str, Any]) -> ModelOverride | None:
        where = f"{self.path}:{line}"
        before = len(self.errors)
        self._fields(where, "model", entry, MODEL_FIELDS)
        prices: dict[str, Decimal] = {}
        for field, kind in PRICE_FIELDS.items():
            if (price := self._price(where, entry, field)) is not None:
                prices[kind] = price
        self._write_order(where, prices)
        name = entry.get("name")
        if "name" in entry and (not isinstance(name, str) or not normalize_model(name)):
            self._error(where, "model", f"'name' must be a model name, got {name!r}", "name")
        values = self._common(where, "model", entry)
        if len(self.errors) > before or values is None or not isinstance(name, str):
            return None
        provider, effective_from, source = values
        return ModelOverride(provider, normalize_model(name), prices, effective_from, source, where)

    def discount(self, line: int, entry: dict[str, Any]) -> Discount | None:
        where = f"{self.path}:{line}"
        before = len(self.errors)
        self._fields(where, "discount", entry, DISCOUNT_FIELDS)
        percent = self._percent(where, entry.get("percent"))
        globs = self._globs(where, entry.get("models"))
        until = self._date(where, "discount", entry, "effective_until")
        values = self._common(where, "discount", entry)
        if len(self.errors) > before or values is None or percent is None or globs is None:
            return None
        provider, effective_from, source = values
        if until is not None and until < effective_from:
            self._error(
                where,
                "discount",
                f"'effective_until' {until} is before 'effective_from'",
                "effective_until",
            )
            return None
        return Discount(provider, globs, percent, effective_from, until, source, where)

    def check_duplicates(self, models: Sequence[ModelOverride]) -> None:
        seen: dict[tuple[str, str, date], str] = {}
        for entry in models:
            key = (entry.provider, entry.name, entry.effective_from)
            if key in seen:
                self._error(entry.where, "model", f"duplicates the entry at {seen[key]}")
            seen.setdefault(key, entry.where)

    def _common(self, where: str, kind: str, entry: dict[str, Any]) -> tuple[str, date, str] | None:
        provider = entry.get("provider")
        if "provider" in entry and provider not in PROVIDERS:
            self._error(
                where,
                kind,
                f"'provider' must be one of {', '.join(PROVIDERS)}, got {provider!r}",
                "provider",
            )
        effective_from = self._date(where, kind, entry, "effective_from")
        source = entry.get("source")
        if "source" in entry and (not isinstance(source, str) or not source.strip()):
            self._error(
                where, kind, "'source' must be a non-empty string naming the agreement", "source"
            )
        if provider not in PROVIDERS or effective_from is None or not isinstance(source, str):
            return None
        return str(provider), effective_from, source

    def _fields(self, where: str, kind: str, entry: dict[str, Any], allowed: Sequence[str]) -> None:
        for name in entry:
            if name not in allowed:
                self._error(
                    where, kind, f"unknown field '{name}' (allowed: {', '.join(allowed)})", name
                )
        for name in _REQUIRED[kind]:
            if name not in entry:
                self._error(where, kind, f"missing required field '{name}'")

    def _price(self, where: str, entry: dict[str, Any], field: str) -> Decimal | None:
        if field not in entry:
            return None
        value = _decimal(entry[field])
        if value is None or value < 0:
            self._error(
                where,
                "model",
                f"'{field}' must be a non-negative price, got {entry[field]!r}",
                field,
            )
            return None
        return value

    def _write_order(self, where: str, prices: Mapping[str, Decimal]) -> None:
        five, hour = prices.get("cache_write_5m"), prices.get("cache_write_1h")
        if five is not None and hour is not None and hour < five:
            self._error(
                where, "model", f"cache_write_1h ({hour}) is cheaper than cache_write_5m ({five})"
            )

    def _date(self, where: str, kind: str, entry: dict[str, Any], field: str) -> date | None:
        value = entry.get(field)
        if value is None:
            return None
        parsed = _as_date(value)
        if parsed is None:
            self._error(
                where, kind, f"'{field}' must be a date like 2026-01-01, got {value!r}", field
            )
        return parsed

    def _percent(self, where: str, value: object) -> Decimal | None:
        percent = _decimal(value) if value is not None else None
        if value is not None and (percent is None or not 0 < percent <= 100):
            self._error(
                where,
                "discount",
                f"'percent' must be above 0 and at most 100, got {value!r}",
                "percent",
            )
            return None
        return percent

    def _globs(self, where: str, value: object) -> tuple[str, ...] | None:
        globs = [value] if isinstance(value, str) else value
        if value is None:
            return None
        if not isinstance(globs, list) or not globs or not all(isinstance(g, str) for g in globs):
            self._error(
                where,
                "discount",
                f"'models' must be \"*\", a glob or a list of them, got {value!r}",
                "models",
            )
            return None
        return tuple(normalize_model(glob) for glob in globs)

    def _error(self, where: str, kind: str, problem: str, field: str | None = None) -> None:
        """Record a problem of the entry at ``where``, at the line of ``field`` if given."""
        if field is not None:
            path, _, line = where.rpartition(":")
            where = f"{path}:{self._field_line(int(line), field)}"
        self.errors.append(f"{where}: [[{kind}]] {problem}")

    def _field_line(self, header: int, field: str) -> int:
        """The line of ``field = …`` in the entry whose header is on line ``header``."""
        key = re.compile(rf"^\s*{re.escape(field)}\s*=")
        for number in range(header + 1, len(self.lines) + 1):
            line = self.lines[number - 1]
            if _HEADER.match(line):
                break
            if key.match(line):
                return number
        return header

    def _line(self, kind: str, index: int) -> int:
        headers = self._headers.get(kind, [])
        if index < len(headers):
            return headers[index]
        key = re.compile(rf"^\s*{re.escape(kind)}\s*=")
        return next((n for n, line in enumerate(self.lines, start=1) if key.match(line)), 0)


def _decimal(value: object) -> Decimal | None:
    """A finite Decimal from a TOML string, integer or decimal; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        return None
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _as_date(value: object) -> date | None:
    if isinstance(value, datetime):
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None
