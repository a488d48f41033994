"""The value types: what a copy of a tap's facts keeps."""

from __future__ import annotations

from dataclasses import fields

from proxy.usage import ResponseFacts, Usage


def test_with_usage_copies_every_field() -> None:
    # Every field set to a value that is not its default, so a field with_usage forgets shows.
    values: dict[str, object] = {}
    for f in fields(ResponseFacts):
        if f.name == "usage":
            values[f.name] = Usage(input=1)
        elif f.type == "bool":
            values[f.name] = True
        else:
            values[f.name] = f"{f.name}-value"
    facts = ResponseFacts(**values)  # type: ignore[arg-type]
    usage = Usage(output=7)
    copy = facts.with_usage(usage)
    assert copy is not facts
    assert copy.usage is usage
    assert copy == ResponseFacts(**{**values, "usage": usage})  # type: ignore[arg-type]
    assert facts.usage == Usage(input=1)
