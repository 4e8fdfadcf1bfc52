"""The one place where errors become HTTP answers.

:class:`~model.errors.AdvisorError` subclasses map to status codes by :data:`STATUS_BY_ERROR`
(the most specific class wins); request validation errors become a 422 listing every
failing field as ``loc`` / ``field`` / ``msg`` / ``type`` (the input is not echoed back).
Anything else is logged and answered with a short 500 body, never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from model.errors import (
    AdvisorError,
    ArtifactError,
    InputFileError,
    InputValidationError,
    ModelNotFoundError,
    ModelRootError,
    PolicyConfigError,
    SchemaError,
)
from service.api.state import ReloadRefused

__all__ = ["STATUS_BY_ERROR", "field_path", "install_error_handlers", "status_for"]

log = logging.getLogger("service.api")

STATUS_BY_ERROR: dict[type[AdvisorError], int] = {
    ModelRootError: 403,  # a reload named a directory outside ADVISOR_MODEL_ROOT
    ReloadRefused: 409,  # the requested model was refused; the previous one still serves
    ArtifactError: 409,
    PolicyConfigError: 409,
    ModelNotFoundError: 503,  # nothing loaded yet: the service is not ready
    InputValidationError: 422,
    SchemaError: 422,
    InputFileError: 400,
    AdvisorError: 400,
}


def status_for(exc: AdvisorError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 400


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "orders", 3, "deadline")`` as ``orders[3].deadline``."""
    path = ""
    for part in loc:
        if part == "body" and not path:
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def validation_details(errors: Any) -> list[dict[str, Any]]:
    details = []
    for error in errors:
        loc = [p if isinstance(p, int | str) else str(p) for p in error.get("loc", ())]
        details.append(
            {
                "loc": loc,
                "field": field_path(loc),
                "msg": str(error.get("msg", "invalid")),
                "type": str(error.get("type", "value_error")),
            }
        )
    return details


async def _advisor_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AdvisorError)
    return JSONResponse({"detail": str(exc)}, status_code=status_for(exc))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": validation_details(exc.errors())}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        # FastAPI's answer to a body that is not decodable JSON (invalid UTF-8, nesting too
        # deep for the parser): a request validation problem like any malformed JSON.
        body = [
            {
                "loc": ["body"],
                "field": "body",
                "msg": "body is not valid JSON text",
                "type": "json_invalid",
            }
        ]
        return JSONResponse({"detail": body}, status_code=422)
    return JSONResponse(
        {"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal error"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AdvisorError, _advisor_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
