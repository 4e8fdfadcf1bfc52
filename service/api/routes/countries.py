"""``GET /v1/countries`` and ``GET /v1/countries/{code}``: the lag the model learned."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from fastapi.exceptions import RequestValidationError

from model.schema import iso_country_codes
from service.api.deps import LoadedModelDep
from service.api.schemas import CountryLag, CountryList, ErrorResponse

router = APIRouter(prefix="/v1/countries", tags=["countries"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong bearer token."},
    503: {"model": ErrorResponse, "description": "No model loaded yet."},
}


@router.get("", response_model=CountryList, responses=_ERRORS, summary="Lag per destination")
async def list_countries(loaded: LoadedModelDep) -> CountryList:
    """Every destination the loaded model saw in training, most shipments first."""
    rows = sorted(loaded.lanes.values(), key=lambda row: (-row["shipments"], row["country"]))
    return CountryList(
        model_version=loaded.model_version,
        countries=[CountryLag.model_validate(row) for row in rows],
    )


@router.get(
    "/{code}",
    response_model=CountryLag,
    responses={
        **_ERRORS,
        404: {"model": ErrorResponse, "description": "A valid code with no training history."},
        422: {"model": ErrorResponse, "description": "Not an ISO 3166-1 alpha-2 code."},
    },
    summary="Lag of one destination",
)
async def get_country(
    code: Annotated[
        str,
        Path(pattern="^[A-Za-z]{2}$", description="ISO 3166-1 alpha-2 code.", examples=["BR"]),
    ],
    loaded: LoadedModelDep,
) -> CountryLag:
    """Median and 90th-percentile transit days, late share, structural-lag flag, shipments."""
    country = code.strip().upper()
    if country not in iso_country_codes():
        raise RequestValidationError(
            [
                {
                    "loc": ("path", "code"),
                    "msg": f"{code[:40]!r} is not an ISO 3166-1 alpha-2 country code",
                    "type": "country_code",
                }
            ]
        )
    row = loaded.lanes.get(country)
    if row is None:
        raise HTTPException(
            status_code=404,
            detail=f"no shipments to {country} in the history of model {loaded.model_version};"
            " recommendations for it use a pooled estimate (reason unseen_country)",
        )
    return CountryLag.model_validate(row)
