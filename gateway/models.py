"""Request bodies of the gateway's routes: strict, so a field the gateway does not know is a 422."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from contracts.decision import Name  # ids and codes: screened for national IDs like the PDP's

NAME_PATTERN = r"^[A-Za-z0-9_.:\-/]+$"
FIELD_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
NATIONAL_ID_COLUMN = "national_id"

PathName = Annotated[str, Path(min_length=1, max_length=128, pattern=NAME_PATTERN)]
FieldName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
EventId = Annotated[str, StringConstraints(
    pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SearchRequest(_Strict):
    column: FieldName = NATIONAL_ID_COLUMN
    value: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    purpose: Name
    case_id: Name | None = None


class RecipientIn(_Strict):
    """Who receives the data, by reference only: the agency or MyData party id from the bureau's
    registers, or the citizen's citizen_ref. No free-text name: it would put names (and IDs typed
    into them) into the append-only ledger; the register holds the display name."""

    type: Literal["agency", "mydata", "citizen"]
    id: Name
    channel: Name | None = None


class DisclosurePurpose(_Strict):
    code: Name
    case_id: Name | None = None
    legal_basis: Name | None = None
    consent_id: Name | None = None

    @model_validator(mode="after")
    def _basis(self) -> DisclosurePurpose:
        if not self.legal_basis and not self.consent_id:
            raise ValueError("a disclosure needs purpose.legal_basis or purpose.consent_id")
        return self


class UpdatePurpose(_Strict):
    code: Name
    case_id: Name | None = None


class UpdateRequest(_Strict):
    values: dict[FieldName, Annotated[str, StringConstraints(max_length=1000)] | None] = Field(
        min_length=1, max_length=50)
    purpose: UpdatePurpose


class DisclosureRequest(_Strict):
    dataset: Name
    record_id: Name
    fields: list[FieldName] = Field(min_length=1, max_length=200)
    recipient: RecipientIn
    purpose: DisclosurePurpose
    derived_from: list[EventId] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _unique(self) -> DisclosureRequest:
        if len(set(self.fields)) != len(self.fields):
            raise ValueError("fields must not repeat")
        return self


