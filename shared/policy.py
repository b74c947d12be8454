"""The dispatch policy (categories, priorities, who may answer, deadlines), loaded from YAML.

Intake reads it to classify and to list categories; dispatch reads it to decide. The
defaults are `shared/policy.yaml`; a deployment sets POLICY_FILE to its own copy.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.events import Priority

DEFAULT_POLICY = Path(__file__).with_name("policy.yaml")
# DESIGN's acknowledge deadlines: what a deployment's file leaves out of its own.
DESIGN_DEADLINES_S: dict[str, int] = {"P1": 30, "P2": 60, "P3": 120, "P4": 300}
# DESIGN's speeds, one per mode a roster may give a team (volunteers' import refuses any
# other): what a deployment's file leaves out of its own.
DESIGN_SPEEDS_KMH: dict[str, float] = {"foot": 5, "bike": 12, "ebike": 18, "car": 30, "drone": 40}
AnswerKind = Literal["police", "police:patrol", "police:station", "security", "volunteer", "any"]
# A category is a name other systems send (`"category": "gas_leak"`): one word, as intake's
# `GET /v1/categories` lists it.
CATEGORY_NAME = r"^[a-z][a-z0-9_]{0,63}$"


class PolicyError(ValueError):
    """A policy file that cannot be used: each line names the place in the file and what is
    wrong there, never the whole file."""


def _answers_to(entry: str, other: str) -> bool:
    """Whether every team `other` admits is already admitted by `entry`."""
    if entry == "any":
        return True
    kind, _, role = entry.partition(":")
    o_kind, _, o_role = other.partition(":")
    return kind == o_kind and (not role or role == o_role)


def _flag_names(value: object) -> object:
    # Flags as normalise_flags gives them to the rules: a file's "Weapon" must bar
    # volunteers from a report flagged "weapon", not match nothing.
    if isinstance(value, list | tuple):
        if any(not isinstance(f, str) or not f.strip() for f in value):
            raise ValueError("flags are words, none empty")
        return normalise_flags(value)
    return value


class CategoryRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    priority: Priority
    answer: tuple[AnswerKind, ...] = Field(min_length=1)
    units: int = Field(ge=1, le=5)
    skills: tuple[str, ...] = ()
    zone_station: bool = False  # the station owning the incident's zone is preferred

    @field_validator("answer")
    @classmethod
    def _every_entry_reachable(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # A team is ranked by the first entry it matches: an entry an earlier one already
        # covers (`[police, police:station]`, anything after `any`) never ranks anybody,
        # so the order the file states is not the order teams are preferred in.
        for i, entry in enumerate(value):
            earlier = next((e for e in value[:i] if _answers_to(e, entry)), None)
            if earlier is not None:
                raise ValueError(f"'{entry}' is already covered by '{earlier}' before it: "
                                 "list each kind once, the narrower (police:patrol) first")
        return value

    @field_validator("skills")
    @classmethod
    def _skills_named(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not s.strip() for s in value):
            raise ValueError("a skill is a word, as the roster gives it (first_aid)")
        return value

    def kind_rank(self, agency_kind: str, agency_role: str | None) -> int | None:
        """Place of a team's kind in the category's list (0 = first), None if not allowed."""
        for rank, entry in enumerate(self.answer):
            if entry == "any" or entry == agency_kind:
                return rank
            kind, _, role = entry.partition(":")
            if kind == agency_kind and role == (agency_role or "station"):
                return rank
        return None


# How dispatch answers an incident of a category its file does not have (intake's file has
# it: a file mounted in one service only; a category renamed or removed while incidents of
# it are open): the nearest police team, who may answer anything, and the command room is
# told (dispatch flags it). Never a failure that dead-letters an incident intake accepted.
UNKNOWN_CATEGORY = CategoryRule(priority="P4", answer=("police",), units=1)


class Policy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    deadlines_s: dict[Priority, int]
    speeds_kmh: dict[Literal["foot", "bike", "ebike", "car", "drone"], float]
    # Every number below means something only above 0 (a rank step or a distance of 0 may
    # be meant; a negative one never): a file with another is refused, naming the key.
    road_factor: float = Field(default=1.3, gt=0)
    rank_step_s: float = Field(default=180, ge=0)
    # The candidate search reads rings up to this; 1000 km is the command room's "anywhere
    # in the district" (a backup's search).
    search_radius_km: float = Field(default=10, gt=0, le=1000)
    fix_max_age_s: int = Field(default=600, gt=0)
    # DESIGN's defaults, as every other field's: a deployment's file that leaves the flags
    # out must not stop weapons barring volunteers (an empty list, written, does).
    raise_to_p1_flags: tuple[str, ...] = ("weapon", "injury", "in_progress")
    bar_volunteers_flags: tuple[str, ...] = ("weapon",)
    p1_min_units: int = Field(default=2, ge=1, le=5)
    handover_filing_h: float = Field(default=24, gt=0)
    followup_days: dict[str, float] = {"dispute": 7}
    # A case that owes no visit by its hand-over (resolved on site, or filed by the station
    # when followup_days gives its category none): days from its resolution to the station's
    # visit (DOMAIN.md: revisits after mediation or a fraud warning). DESIGN names none: a
    # file that leaves it out orders none.
    followup_resolved_days: dict[str, float] = {}
    # A follow-up that finds the agreement not holding orders another, up to this many
    # visits; then the command room is told (the incident is flagged).
    followup_max_visits: int = Field(default=5, ge=1)
    # A revisit ordered by a visit that found the agreement broken, for a category the file
    # gives no interval of its own (its interval removed while the case was followed up).
    followup_default_days: float = Field(default=7, gt=0, le=365)
    # The retries of what nobody could be found for, the board flagged meanwhile. Never 0
    # (a timer fired without pause, a search each time); never so long that the case is
    # as good as left: a hand-over retried within a day (its filing is due in 24 h), a
    # visit within a week, a backup for a team on scene within 10 minutes. A visit's order
    # unanswered for followup_retry_h is flagged too.
    handover_retry_min: float = Field(default=15, ge=1, le=1440)
    followup_retry_h: float = Field(default=1, ge=0.1, le=168)
    # A visit's order its team took (acknowledged, on its way, there) and gave no verdict
    # (holds, or does not) within this is flagged: no next visit is ordered without one.
    followup_verdict_h: float = Field(default=24, ge=1, le=168)
    reinforce_retry_s: float = Field(default=20, ge=1, le=600)
    duplicate_radius_m: float = Field(default=200, ge=0)
    duplicate_window_s: int = Field(default=600, ge=0)
    flag_after_misses: int = Field(default=2, ge=1)
    categories: dict[Annotated[str, Field(pattern=CATEGORY_NAME)], CategoryRule]

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

    @field_validator("speeds_kmh", mode="before")
    @classmethod
    def _designs_speeds_for_the_rest(cls, value: object) -> object:
        # As with the deadlines: a mode the file leaves out keeps DESIGN's speed, not the
        # walking pace every unknown mode gets (a drone team ranked at 5 km/h).
        return {**DESIGN_SPEEDS_KMH, **value} if isinstance(value, dict) else value

    @field_validator("raise_to_p1_flags", "bar_volunteers_flags", mode="before")
    @classmethod
    def _flags_as_reports_give_them(cls, value: object) -> object:
        return _flag_names(value)

    @field_validator("followup_days", "followup_resolved_days")
    @classmethod
    def _positive_days(cls, value: dict[str, float]) -> dict[str, float]:
        if any(days <= 0 for days in value.values()):
            raise ValueError("follow-up intervals are days after the hand-over or the "
                             "resolution, more than 0")
        return value

    @model_validator(mode="after")
    def _followups_of_known_categories(self) -> Policy:
        # A follow-up of a category the file does not have (a typo: `disputes`) would
        # silently give the category it meant none.
        for key in ("followup_days", "followup_resolved_days"):
            unknown = sorted(set(getattr(self, key)) - set(self.categories))
            if unknown:
                raise ValueError(f"{key} names {', '.join(unknown)}, not a category of "
                                 f"the file ({', '.join(sorted(self.categories))})")
        return self

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

    def rule(self, category: str) -> CategoryRule:
        """The category's rule; for one the file does not have, UNKNOWN_CATEGORY."""
        return self.categories.get(category) or UNKNOWN_CATEGORY

    def units_for(self, category: str, priority: Priority) -> int:
        rule = self.rule(category)
        if priority == "P1" and rule.priority != "P1":
            return max(rule.units, self.p1_min_units)
        return rule.units


def normalise_flags(flags: Iterable[str]) -> tuple[str, ...]:
    """Flags as the policy names them: "Weapon " is `weapon` (a flag that bars volunteers
    must bar them however a person typed it), each once."""
    return tuple(dict.fromkeys(f.strip().lower() for f in flags if f.strip()))


def policy_path(path: str | Path | None = None) -> Path:
    """The file a process reads: `path`, else POLICY_FILE, else the built-in defaults."""
    return Path(path or os.environ.get("POLICY_FILE") or DEFAULT_POLICY)


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy in the file, whole; PolicyError for a file that is not a mapping of
    settings, pydantic's ValidationError for a wrong value (check_policy_file names its
    place for a person)."""
    return Policy.model_validate(_settings_in(policy_path(path)))


def check_policy_file(path: str | Path | None = None) -> Policy:
    """load_policy, or PolicyError with one line per place the file is wrong: a process
    refuses to start on it (never one accepted in part, nor a consumer that fails on the
    first incident)."""
    path = policy_path(path)
    try:
        return Policy.model_validate(_settings_in(path))
    except ValidationError as exc:
        # The place (categories.violence.units) and what is wrong, without the values:
        # pydantic's own text repeats them and buries the key under its help links.
        wrong = [f"  {'.'.join(str(p) for p in err['loc']) or '(top level)'}: "
                 f"{_message(err)}" for err in exc.errors(include_url=False, include_input=False)]
        raise PolicyError(f"policy file {path} is wrong:\n" + "\n".join(wrong)) from None


def _settings_in(path: Path) -> dict[str, object]:
    try:
        with path.open(encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise PolicyError(f"policy file {path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise PolicyError(f"policy file {path}: is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or "not YAML"
        raise PolicyError(f"policy file {path}: {where}{problem}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"policy file {path}: must be a mapping of settings "
                          "(deadlines_s:, categories:, ...), not "
                          f"{'an empty file' if data is None else type(data).__name__}")
    return data


def _message(err: object) -> str:
    assert isinstance(err, dict)
    if err["type"] == "extra_forbidden":
        return "not a key of the policy (a typo?)"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


@lru_cache(maxsize=4)
def cached_policy(path: str | None = None) -> Policy:
    return load_policy(path)
