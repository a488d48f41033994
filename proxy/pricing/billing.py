"""What of an answer is charged: the parts (model, tokens) pricing multiplies by rates.

Rules (from Anthropic's compaction, advisor-tool and refusals-and-fallback pages,
platform.claude.com/docs/en/build-with-claude/compaction and its neighbours):

- Without ``usage.iterations``: the top-level usage at the response's model; a refusal that
  arrived before any output (``stop_reason`` ``refusal``, no output tokens) is not charged at
  all: "token counts appear in usage but are not charged". A mid-stream refusal is charged for
  its input and the output already streamed, like any answer.
- With ``usage.iterations``, the iterations are the bill ("the per-attempt record of what you
  are billed"; "sum across all entries"), the top level is not added on top: compaction entries
  (left out of the top-level counts) and advisor entries (at the advisor model's rates) are
  charged like executor entries, each at its own model. An attempt that declined before
  producing output costs nothing: a ``message`` entry (output 0) followed by the
  ``fallback_message`` that replaced it, or the last attempt (output 0) of an answer whose
  ``stop_reason`` is ``refusal``. Web searches are the request's, counted once at the top.
"""

from __future__ import annotations

from collections.abc import Sequence

from proxy.usage import FALLBACK, MESSAGE, REFUSAL, Iteration, ResponseFacts, Usage

Part = tuple[str | None, Usage]  # (model, tokens charged at its rates)
_ATTEMPTS = frozenset({MESSAGE, FALLBACK})


def charged_parts(facts: ResponseFacts) -> list[Part]:
    """The charged parts of an answer, in order; [] when nothing of it is charged."""
    iterations = facts.iterations
    if not iterations:
        if facts.stop_reason == REFUSAL and not facts.usage.output:
            return []
        return [(facts.model, facts.usage)]
    parts: list[Part] = [
        (it.model or facts.model, it.usage)
        for index, it in enumerate(iterations)
        if not _declined_before_output(iterations, index, facts.stop_reason)
    ]
    if searches := facts.usage.web_search_requests:
        parts.append((facts.model, Usage(web_search_requests=searches)))
    return parts


def _declined_before_output(
    iterations: Sequence[Iteration], index: int, stop_reason: str | None
) -> bool:
    entry = iterations[index]
    if entry.kind not in _ATTEMPTS or entry.usage.output:
        return False
    later = [it.kind for it in iterations[index + 1 :]]
    if entry.kind == MESSAGE and FALLBACK in later:
        return True  # a hop that declined and handed over to a fallback model
    return stop_reason == REFUSAL and _ATTEMPTS.isdisjoint(later)  # the final attempt refused
