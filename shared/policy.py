"""The dispatch policy (categories, priorities, who may answer, deadlines), loaded from YAML.

Intake reads it to classify and to list categories; dispatch reads it to decide. The
defaults are `shared/policy.yaml`; a deployment sets POLICY_FILE to its own copy.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.events import Priority

DEFAULT_POLICY = Path(__file__).with_name("policy.yaml")
# DESIGN's acknowledge deadlines: what a deployment's file leaves out of its own.
DESIGN_DEADLINES_S: dict[str, int] = {"P1": 30, "P2": 60, "P3": 120, "P4": 300}
AnswerKind = Literal["police", "police:patrol", "police:station", "security", "volunteer", "any"]


class CategoryRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    priority: Priority
    answer: tuple[AnswerKind, ...] = Field(min_length=1)
    units: int = Field(ge=1, le=5)
    skills: tuple[str, ...] = ()
    zone_station: bool = False  # the station owning the incident's zone is preferred

    def kind_rank(self, agency_kind: str, agency_role: str | None) -> int | None:
        """Place of a team's kind in the category's list (0 = first), None if not allowed."""
        for rank, entry in enumerate(self.answer):
            if entry == "any" or entry == agency_kind:
                return rank
            kind, _, role = entry.partition(":")
            if kind == agency_kind and role == (agency_role or "station"):
                return rank
        return None


class Policy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    deadlines_s: dict[Priority, int]
    speeds_kmh: dict[str, float]
    road_factor: float = 1.3
    rank_step_s: float = 180
    search_radius_km: float = 10
    fix_max_age_s: int = 600
    # DESIGN's defaults, as every other field's: a deployment's file that leaves the flags
    # out must not stop weapons barring volunteers (an empty list, written, does).
    raise_to_p1_flags: tuple[str, ...] = ("weapon", "injury", "in_progress")
    bar_volunteers_flags: tuple[str, ...] = ("weapon",)
    p1_min_units: int = 2
    handover_filing_h: float = 24
    followup_days: dict[str, float] = {"dispute": 7}
    # A follow-up that finds the agreement not holding orders another, up to this many
    # visits; then the command room is told (the incident is flagged).
    followup_max_visits: int = Field(default=5, ge=1)
    duplicate_radius_m: float = 200
    duplicate_window_s: int = 600
    flag_after_misses: int = 2
    categories: dict[str, CategoryRule]

    @field_validator("deadlines_s", mode="before")
    @classmethod
    def _designs_for_the_rest(cls, value: object) -> object:
        # A deployment's file that sets the priorities it uses (none of its categories is a
        # P4) keeps DESIGN's deadline for the others, as it keeps DESIGN's flag rules: a
        # revision or a flag can still make any priority, and refusing the file stopped
        # intake and dispatch from starting.
        return {**DESIGN_DEADLINES_S, **value} if isinstance(value, dict) else value

    @field_validator("deadlines_s")
    @classmethod
    def _every_priority(cls, value: dict[Priority, int]) -> dict[Priority, int]:
        # A priority without one fails every order of it (the incident is dead-lettered).
        missing = [p for p in ("P1", "P2", "P3", "P4") if p not in value]
        if missing:
            raise ValueError(f"an acknowledge deadline is needed for {', '.join(missing)}")
        if any(seconds <= 0 for seconds in value.values()):
            raise ValueError("deadlines are seconds after the order, more than 0")
        return value

    @field_validator("speeds_kmh")
    @classmethod
    def _positive_speeds(cls, value: dict[str, float]) -> dict[str, float]:
        if any(speed <= 0 for speed in value.values()):
            raise ValueError("speeds are km/h, more than 0")
        return value

    @field_validator("categories")
    @classmethod
    def _not_empty(cls, value: dict[str, CategoryRule]) -> dict[str, CategoryRule]:
        if not value:
            raise ValueError("a policy needs at least one category")
        return value

    def classify(self, category: str, flags: tuple[str, ...] | list[str]) -> Priority:
        rule = self.categories[category]
        if any(f in self.raise_to_p1_flags for f in flags):
            return "P1"
        return rule.priority

    def units_for(self, category: str, priority: Priority) -> int:
        rule = self.categories[category]
        if priority == "P1" and rule.priority != "P1":
            return max(rule.units, self.p1_min_units)
        return rule.units


def normalise_flags(flags: Iterable[str]) -> tuple[str, ...]:
    """Flags as the policy names them: "Weapon " is `weapon` (a flag that bars volunteers
    must bar them however a person typed it), each once."""
    return tuple(dict.fromkeys(f.strip().lower() for f in flags if f.strip()))


def load_policy(path: str | Path | None = None) -> Policy:
    path = Path(path or os.environ.get("POLICY_FILE") or DEFAULT_POLICY)
    with path.open(encoding="utf-8") as fh:
        return Policy.model_validate(yaml.safe_load(fh))


@lru_cache(maxsize=4)
def cached_policy(path: str | None = None) -> Policy:
    return load_policy(path)
