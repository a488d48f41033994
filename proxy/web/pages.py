"""The dashboard's routes: pages, the login form, the task value form, CSV downloads.

Every page takes the filters in its URL (``period``; ``proxy.web.period``), reads its figures
through ``figures`` (which calls ``proxy.reports``), and answers HTML, or with ``?format=csv``
the rows of the table it shows. A page for a caller without a session redirects to the login
form; forms that change something need an admin session and a same-origin POST with the CSRF
token (``access``).
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from proxy import people as records
from proxy.reports import ReportError
from proxy.tabular import CSV_TYPE, to_csv
from proxy.tasks import TaskRecordError, update_task
from proxy.text import NAME_MAX_CHARS
from proxy.web import figures, format
from proxy.web.access import COOKIE, SESSION_SECONDS, Caller, Sessions, same_origin
from proxy.web.period import PERIODS, View, view_of

if TYPE_CHECKING:
    import jinja2

router = APIRouter(include_in_schema=False)
TEMPLATES = Path(__file__).parent / "templates"


@functools.cache
def _templates() -> jinja2.Environment:
    """The page templates, loaded at the first page served (a proxy nobody opens the
    dashboard of never imports Jinja)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(),
        auto_reload=False,
    )
    env.filters |= {
        "usd": format.usd,
        "per_mtok": format.per_mtok,
        "count": format.count,
        "percent": format.percent,
        "multiple": format.multiple,
        "quote": lambda text: quote(text, safe=""),
        "chart_json": chart_json,
    }
    return env


SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


class Refused(Exception):
    """A request the dashboard will not answer: a status, and a page saying why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


def caller_of(request: Request) -> Caller:
    peer = request.client.host if request.client else ""
    cookie = request.cookies.get(COOKIE)
    return sessions_of(request).caller(cookie, peer, dict(request.headers))


def render(
    request: Request, name: str, caller: Caller | None, status: int = 200, **context: Any
) -> HTMLResponse:
    context |= {
        "request": request,
        "caller": caller,
        "csrf": sessions_of(request).csrf_token(caller) if caller and caller.role else "",
        "login_required": sessions_of(request).login_required,
        "periods": PERIODS,
    }
    html = _templates().get_template(name).render(context)
    return HTMLResponse(html, status, headers=SECURITY_HEADERS)


def csv_download(rows: list[dict[str, Any]], name: str) -> Response:
    headers = {"content-disposition": f'attachment; filename="{name}.csv"', **SECURITY_HEADERS}
    return Response(to_csv(rows), media_type=f"{CSV_TYPE}; charset=utf-8", headers=headers)


def _allowed(request: Request) -> Caller | Response:
    """The caller, or the answer for one who may not see pages (login redirect or 403)."""
    caller = caller_of(request)
    if caller.role:
        return caller
    if caller.refusal:
        return render(request, "refused.html", None, 403, message=caller.refusal)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/web/login?next={quote(target, safe='')}", 303)


def _view(request: Request) -> View:
    return view_of(dict(request.query_params))


def _page_of(
    request: Request, caller: Caller, view: View, name: str, **context: Any
) -> HTMLResponse:
    return render(request, name, caller, view=view, **context)


def _wants_csv(request: Request) -> bool:
    return request.query_params.get("format") == "csv"


@router.get("/")
async def overview(request: Request) -> Response:
    caller = _allowed(request)
    if isinstance(caller, Response):
        return caller
    engine = request.app.state.parts.engine
    view = _view(request)
    page = await figures.overview_page(engine, view)
    if _wants_csv(request):
        return csv_download(page["csv_rows"], "overview")
    menus = await request.app.state.menus.of(engine, view)
    return _page_of(
        request, caller, view, "overview.html", page=page, menus=menus, active="overview"
    )


@router.get("/web/tasks")
async def tasks(request: Request) -> Response:
    caller = _allowed(request)
    if isinstance(caller, Response):
        return caller
    engine = request.app.state.parts.engine
    view = _view(request)
    page = await figures.tasks_page(engine, view)
    if _wants_csv(request):
        table = request.query_params.get("table", "costliest")
        return csv_download(page["csv_rows"].get(table, []), f"tasks-{table}")
    menus = await request.app.state.menus.of(engine, view)
    return _page_of(request, caller, view, "tasks.html", page=page, menus=menus, active="tasks")


@router.get("/web/tasks/{task_id:path}")
async def task(request: Request, task_id: str) -> Response:
    caller = _allowed(request)
    if isinstance(caller, Response):
        return caller
    page = await figures.task_page(request.app.state.parts.engine, task_id)
    if page is None:
        raise Refused(404, f"no usage recorded for task {task_id!r}")
    if _wants_csv(request):
        return csv_download(page["csv_rows"], "task-hours")
    saved = request.query_params.get("saved") == "1"
    return render(
        request, "task.html", caller, view=_view(request), page=page, active="tasks", saved=saved
    )


@router.post("/web/tasks/{task_id:path}")
async def set_task_value(request: Request, task_id: str) -> Response:
    caller = _allowed(request)
    if isinstance(caller, Response):
        return caller
    form = await form_of(request)
    _check_change(request, caller, form.get("csrf", ""))
    if len(task_id) > NAME_MAX_CHARS:
        raise Refused(400, "task id too long")
    changes = _value_changes(form)
    await update_task(request.app.state.parts.engine, task_id, changes)
    return RedirectResponse(f"/web/tasks/{quote(task_id, safe='')}?saved=1", 303)


FORM_MAX_BYTES = 16 * 1024


async def form_of(request: Request) -> dict[str, str]:
    """A small ``application/x-www-form-urlencoded`` body (every form here is one) as a dict:
    parsed with the standard library rather than a multipart parser the pages never need."""
    body = await request.body()
    if len(body) > FORM_MAX_BYTES:
        raise Refused(413, "form too large")
    try:
        return dict(parse_qsl(body.decode("utf-8"), max_num_fields=20))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refused(400, "a form must be URL-encoded UTF-8") from exc


def _check_change(request: Request, caller: Caller, csrf: str) -> None:
    if not caller.can_change:
        raise Refused(403, "a viewer session can see but not change: log in with the admin token")
    if not same_origin(dict(request.headers)) or not sessions_of(request).csrf_ok(caller, csrf):
        raise Refused(403, "this form was not sent from this dashboard's own page (CSRF check)")


def _value_changes(form: dict[str, str]) -> dict[str, Decimal | None]:
    """The form's value: dollars, or hours × rate (the other basis cleared)."""
    if form.get("basis") == "dollars":
        return {
            "value_usd": _amount(form, "value_usd"),
            "human_hours": None,
            "hourly_rate_usd": None,
        }
    return {
        "value_usd": None,
        "human_hours": _amount(form, "human_hours"),
        "hourly_rate_usd": _amount(form, "hourly_rate_usd"),
    }


def _amount(form: dict[str, str], name: str) -> Decimal:
    text = form.get(name, "").strip().replace(",", "")
    try:
        amount = Decimal(text)
    except InvalidOperation as exc:
        raise Refused(400, f"{name.replace('_', ' ')} must be a number; got {text!r}") from exc
    if not amount.is_finite() or amount < 0:
        raise Refused(400, f"{name.replace('_', ' ')} must be zero or more")
    return amount


@router.get("/web/people")
async def people(request: Request) -> Response:
    caller = _allowed(request)
    if isinstance(caller, Response):
        return caller
    parts = request.app.state.parts
    view = _view(request)
    page = await figures.people_page(parts.engine, view, parts.settings.usd_per_currency)
    if _wants_csv(request):
        return csv_download(page["csv_rows"], "people")
    edit = await _person_to_edit(parts.engine, request.query_params.get("edit"))
    saved = request.query_params.get("saved")
    return _page_of(
        request,
        caller,
        view,
        "people.html",
        page=page,
        menus={},
        active="people",
        edit=edit,
        saved=saved,
    )


async def _person_to_edit(engine: Any, user: str | None) -> dict[str, Any]:
    """The pay form's starting values: ``user``'s record in effect today, if any."""
    if not user:
        return {}
    today = datetime.now(UTC).date()
    found = records.in_effect(await records.load_people(engine), today).get(user)
    return found.as_json() if found else {"user": user}


@router.post("/web/people")
async def set_person(request: Request) -> Response:
    """The pay form: one person's team and annual pay from a date (as ``PUT /api/v1/people``),
    then the pay gauge refreshed."""
    caller = _allowed(request)
    if isinstance(caller, Response):
        return caller
    form = await form_of(request)
    _check_change(request, caller, form.get("csrf", ""))
    parts = request.app.state.parts
    today = datetime.now(UTC).date()
    person = records.check(
        records.Person(
            user=form.get("user", "").strip(),
            effective_from=_day(form.get("effective_from", ""), today),
            name=form.get("name", "").strip() or None,
            team=form.get("team", "").strip() or None,
            annual_compensation=_amount(form, "annual_compensation"),
            currency=form.get("currency", "USD").strip().upper() or "USD",
        )
    )
    await records.save_people(parts.engine, [person])
    await records.refresh_gauge(parts.engine, parts.metrics, parts.settings.usd_per_currency, today)
    return RedirectResponse(f"/web/people?saved={quote(person.user, safe='')}", 303)


def _day(text: str, today: date) -> date:
    if not text.strip():
        return today
    try:
        return date.fromisoformat(text.strip())
    except ValueError as exc:
        raise Refused(
            400, f"effective from must be a date (YYYY-MM-DD); got {text[:40]!r}"
        ) from exc


@router.get("/web/models")
async def models(request: Request) -> Response:
    caller = _allowed(request)
    if isinstance(caller, Response):
        return caller
    parts = request.app.state.parts
    view = _view(request)
    page = await figures.models_page(parts.engine, view, parts.pricer)
    if _wants_csv(request):
        return csv_download(page["csv_rows"], "models")
    menus = await request.app.state.menus.of(parts.engine, view)
    return _page_of(request, caller, view, "models.html", page=page, menus=menus, active="models")


@router.get("/web/budgets")
async def budgets(request: Request) -> Response:
    caller = _allowed(request)
    if isinstance(caller, Response):
        return caller
    guard = request.app.state.parts.guard
    page = await figures.budgets_page(request.app.state.parts.engine, guard.tz, datetime.now(UTC))
    if _wants_csv(request):
        return csv_download(page["csv_rows"], "budgets")
    return render(request, "budgets.html", caller, view=_view(request), page=page, active="budgets")


@router.get("/web/reconcile")
async def reconcile(request: Request) -> Response:
    caller = _allowed(request)
    if isinstance(caller, Response):
        return caller
    parts = request.app.state.parts
    view = _view(request)
    page = await figures.reconcile_page(parts.engine, view, parts.settings.prices_file)
    if _wants_csv(request):
        return csv_download(page["csv_rows"], "reconcile")
    return _page_of(
        request, caller, view, "reconcile.html", page=page, menus={}, active="reconcile"
    )


@router.get("/web/login")
async def login_form(request: Request) -> Response:
    if not sessions_of(request).login_required:  # loopback-only: nothing to log in with
        return RedirectResponse("/", 303)
    return render(request, "login.html", None, next=_next(request.query_params.get("next")))


@router.post("/web/login")
async def login(request: Request) -> Response:
    if not same_origin(dict(request.headers)):
        raise Refused(403, "the login form must be sent from this dashboard's own page")
    form = await form_of(request)
    target = _next(form.get("next"))
    role = sessions_of(request).role_of_token(form.get("token", ""))
    if role is None:
        return render(request, "login.html", None, 401, next=target, error="wrong token")
    answer = RedirectResponse(target, 303)
    answer.set_cookie(
        COOKIE,
        sessions_of(request).issue(role),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return answer


@router.post("/web/logout")
async def logout(request: Request) -> Response:
    if not same_origin(dict(request.headers)):
        raise Refused(403, "the logout form must be sent from this dashboard's own page")
    answer = RedirectResponse("/web/login", 303)
    answer.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return answer


def _next(target: str | None) -> str:
    """A local path to go to after login; anything else (another site) goes to the overview."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def register_errors(app: Any) -> None:
    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused | ReportError | TaskRecordError | records.PersonError)
        status = exc.status if isinstance(exc, Refused) else 400
        return render(request, "refused.html", caller_of(request), status, message=str(exc))

    for kind in (Refused, ReportError, TaskRecordError, records.PersonError):
        app.add_exception_handler(kind, refused)


def chart_json(data: Any) -> str:
    """Chart data for a ``<script type="application/json">`` block (``</`` cannot end it)."""
    return json.dumps(data).replace("</", "<\\/")
