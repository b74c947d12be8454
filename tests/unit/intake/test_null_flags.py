"""What a report may hold: null for an optional list is absent, as for any other
optional field; a list that is not one is still refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.intake.domain import IncidentIn

REPORT = {"external_ref": "cam-7:1", "category": "suspicious", "district": "d1",
          "location": {"lat": 22.8, "lon": 108.3}}


def test_null_flags_are_no_flags() -> None:
    assert IncidentIn.model_validate({**REPORT, "flags": None}).flags == []


@pytest.mark.parametrize("flags", ["weapon", {"weapon": True}, [None]])
def test_flags_that_are_not_a_list_of_words_are_still_refused(flags: object) -> None:
    with pytest.raises(ValidationError) as refused:
        IncidentIn.model_validate({**REPORT, "flags": flags})
    assert refused.value.errors()[0]["loc"][0] == "flags"
