"""Domain errors as the API's answers, registered once on the app (``register``).

Routes call the domain and let its errors rise; each becomes the same answer wherever it is
raised, a JSON ``{"detail": message}`` with the status below, the message the domain wrote:

- ``reports.ReportError``: a report asked for with arguments that make no sense (start after
  end, an unknown grouping, compensation that cannot be converted to USD): 400;
- ``tasks.TaskRecordError``: a task record refused (negative hours, an unknown field …): 400;
- ``sessions.ContextError``: a session's work context refused (a field too long …): 422;
- ``people.PersonError``: a person record refused (unknown currency, control characters …): 422;
- ``apikeys.KeyNotFound``: no key has this id: 404; ``apikeys.KeyProblem``: a key that cannot
  change any more (rotating a revoked key, revoking it twice) or an owner name refused: 409;
- ``seats.SeatError``: a seat record refused: 422;
- ``budgets.BudgetError``: a budget refused (no amount, a name on org …): 422;
- ``people.PeopleImportError``, ``seats.SeatImportError``: a CSV refused, nothing imported: 422,
  with every problem and its line as ``errors: [{"line": …, "error": …}]``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from proxy.apikeys import KeyNotFound, KeyProblem
from proxy.budgets import BudgetError
from proxy.people import PeopleImportError, PersonError
from proxy.reports import ReportError
from proxy.seats import SeatError, SeatImportError
from proxy.sessions import ContextError
from proxy.tasks import TaskRecordError

STATUS: dict[type[Exception], int] = {
    ReportError: 400,
    TaskRecordError: 400,
    PersonError: 422,
    ContextError: 422,
    KeyNotFound: 404,  # before KeyProblem, its base: a handler is looked up along the MRO
    KeyProblem: 409,
    SeatError: 422,
    BudgetError: 422,
}


def register(app: FastAPI) -> None:
    """Answer every domain error as the module doc says."""
    for error, status in STATUS.items():
        app.add_exception_handler(error, _detail(status))
    app.add_exception_handler(PeopleImportError, _import_refused)
    app.add_exception_handler(SeatImportError, _import_refused)


def _detail(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def answer(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status)

    return answer


async def _import_refused(request: Request, exc: Exception) -> JSONResponse:
    problems = exc.errors if isinstance(exc, PeopleImportError | SeatImportError) else []
    errors = [{"line": line, "error": message} for line, message in problems]
    return JSONResponse({"detail": "nothing imported", "errors": errors}, status_code=422)
