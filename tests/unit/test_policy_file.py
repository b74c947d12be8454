"""A deployment's policy file, as a station's administrator writes it: a wrong one is refused
at start, naming the place in the file; what it says is what the rules do."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.dispatch.config import Settings
from services.dispatch.domain import IncidentFacts, Unit, rank_candidates, travel_time_s
from shared import policy as policy_module
from shared.events import utcnow
from shared.policy import DEFAULT_POLICY, PolicyError, check_policy_file
from shared.runtime import run_service

Edit = Callable[[dict[str, Any]], None]


def shipped() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))


def written(tmp_path: Path, edit: Edit) -> Path:
    data = shipped()
    edit(data)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def cat(name: str, **changes: Any) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        data["categories"][name].update(changes)
    return edit


def top(**changes: Any) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        data.update(changes)
    return edit


def without(name: str, key: str) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        del data["categories"][name][key]
    return edit


# (what the administrator wrote, the place the refusal must name)
WRONG: dict[str, tuple[Edit, str]] = {
    "no units": (cat("violence", units=0), "categories.violence.units"),
    "an agency kind nobody has": (cat("fire", answer=["firemen", "police"]),
                                  "categories.fire.answer.0"),
    "a police role that does not exist": (cat("noise", answer=["security", "police:chief"]),
                                          "categories.noise.answer.1"),
    "an entry an earlier one covers": (cat("dispute", answer=["police", "police:patrol"]),
                                       "categories.dispute.answer"),
    "an entry after any": (cat("medical", answer=["any", "police"]),
                           "categories.medical.answer"),
    "a negative deadline": (top(deadlines_s={"P1": -30}), "deadlines_s"),
    "a priority that does not exist": (cat("noise", priority="P5"),
                                       "categories.noise.priority"),
    "a category without its priority": (without("traffic", "priority"),
                                        "categories.traffic.priority"),
    "a typo in a category's key": (cat("noise", unit=1), "categories.noise.unit"),
    "a typo in a top key": (top(search_radius=5), "search_radius"),
    "a mode no team has": (top(speeds_kmh={"cars": 30}), "speeds_kmh.cars"),
    "a follow-up of a category the file lacks": (top(followup_days={"disputes": 7}),
                                                 "disputes"),
    "a follow-up after no days": (top(followup_days={"dispute": 0}), "followup_days"),
    "a visit after a resolution of a category the file lacks": (
        top(followup_resolved_days={"fraud_warnings": 7}), "fraud_warnings"),
    "a visit after a resolution after no days": (
        top(followup_resolved_days={"fraud_warning": 0}), "followup_resolved_days"),
    "a negative search radius": (top(search_radius_km=-10), "search_radius_km"),
    "a negative rank step": (top(rank_step_s=-180), "rank_step_s"),
    "fixes never fresh": (top(fix_max_age_s=0), "fix_max_age_s"),
    "a road shorter than nothing": (top(road_factor=0), "road_factor"),
    "flagged before any miss": (top(flag_after_misses=0), "flag_after_misses"),
    "filing due before the hand-over": (top(handover_filing_h=-24), "handover_filing_h"),
    "no units for a raised P1": (top(p1_min_units=0), "p1_min_units"),
    "a negative duplicate window": (top(duplicate_window_s=-1), "duplicate_window_s"),
    "an empty flag": (top(bar_volunteers_flags=["weapon", " "]), "bar_volunteers_flags"),
    # the retry intervals: none at 0 (a timer firing without pause), none so long that the
    # case is left waiting for good
    "a hand-over retried without pause": (top(handover_retry_min=0), "handover_retry_min"),
    "a hand-over retried after days": (top(handover_retry_min=3 * 1440),
                                       "handover_retry_min"),
    "a visit ordered again without pause": (top(followup_retry_h=0), "followup_retry_h"),
    "a visit ordered again after weeks": (top(followup_retry_h=24 * 30), "followup_retry_h"),
    "a backup looked for without pause": (top(reinforce_retry_s=0), "reinforce_retry_s"),
    "a backup looked for once an hour": (top(reinforce_retry_s=3600), "reinforce_retry_s"),
    "a revisit after no days": (top(followup_default_days=-7), "followup_default_days"),
    "a revisit after years": (top(followup_default_days=3650), "followup_default_days"),
    "a category name no system can send": (
        lambda d: d["categories"].update({"Gas Leak": d["categories"]["fire"]}),
        "categories.Gas Leak"),
}


@pytest.mark.parametrize("what", sorted(WRONG))
def test_a_wrong_policy_file_is_refused_naming_the_place(tmp_path: Path, what: str) -> None:
    edit, place = WRONG[what]
    with pytest.raises(PolicyError) as refused:
        check_policy_file(written(tmp_path, edit))
    message = str(refused.value)
    assert place in message and str(tmp_path) in message, message
    assert "Traceback" not in message and "errors.pydantic.dev" not in message


@pytest.mark.parametrize(("text", "says"), [
    ("", "an empty file"),
    ("- violence\n- fire\n", "list"),
    ("deadlines_s: {P1: 30\ncategories: {}\n", "line "),
])
def test_a_file_that_is_not_a_mapping_of_settings_is_refused_with_its_place(
        tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as refused:
        check_policy_file(path)
    assert says in str(refused.value) and str(path) in str(refused.value)


def test_a_missing_policy_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as refused:
        check_policy_file(tmp_path / "nowhere.yaml")
    assert "nowhere.yaml" in str(refused.value)


@pytest.mark.parametrize("service", ["dispatch", "intake"])
def test_a_service_with_a_wrong_policy_file_says_where_and_exits_for_good(
        service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Not a traceback out of the worker (exit 1), which make run and compose restart for
    # ever, nor a consumer failing at the first incident: EX_CONFIG and the file's place.
    # Intake reads the file too (priorities, the duplicate window, the categories it takes).
    monkeypatch.setenv("ADMIN_TOKEN", "test-admin-token")
    monkeypatch.setenv("POLICY_FILE", str(written(tmp_path, cat("violence", units=0))))
    with pytest.raises(SystemExit) as stopped:
        run_service(service)
    assert stopped.value.code == 78
    err = capsys.readouterr().err
    assert "POLICY_FILE" in err and "categories.violence.units" in err
    assert "Traceback" not in err


def test_a_wrong_file_mounted_over_the_built_in_one_stops_dispatch_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # compose mounts the deployment's file over shared/policy.yaml; POLICY_FILE is unset
    monkeypatch.delenv("POLICY_FILE", raising=False)
    monkeypatch.setattr(policy_module, "DEFAULT_POLICY",
                        written(tmp_path, top(deadlines_s={"P1": 0})))
    with pytest.raises(ValueError, match="deadlines_s"):
        Settings(admin_token="test-admin-token")


def test_the_shipped_policy_is_accepted_by_dispatchs_settings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POLICY_FILE", raising=False)
    assert Settings(admin_token="test-admin-token").policy_file is None
    assert Settings(admin_token="test-admin-token", policy_file=str(DEFAULT_POLICY)).policy_file


def volunteers_near(flags: tuple[str, ...], bar: list[str]) -> list[str]:
    policy = load_policy_with(top(bar_volunteers_flags=bar))
    now = utcnow()
    unit = Unit(team_id="aunties", agency_id="a", agency_kind="volunteer", agency_role=None,
                mode="foot", district="d", status="available", on_shift=True,
                lat=22.817, lon=108.3665, fix_at=now)
    facts = IncidentFacts(incident_id="i", district="d", category="lost_person",
                          priority="P2", flags=flags, lat=22.8171, lon=108.3665)
    return [r.unit.team_id for r in rank_candidates([unit], facts, policy, now)]


def load_policy_with(edit: Edit) -> policy_module.Policy:
    data = shipped()
    edit(data)
    return policy_module.Policy.model_validate(data)


def test_flags_written_in_capitals_in_the_file_still_bar_volunteers() -> None:
    # Reports' flags are lower-cased (normalise_flags); the administrator wrote "Weapon"
    assert volunteers_near(("weapon",), ["Weapon "]) == []
    assert volunteers_near((), ["Weapon "]) == ["aunties"]
    assert load_policy_with(top(raise_to_p1_flags=["In_Progress"])).classify(
        "noise", ("in_progress",)) == "P1"


def test_a_mode_the_file_leaves_out_keeps_designs_speed_not_a_walking_pace() -> None:
    # A station that only changed the car's speed: its drone teams still fly at 40 km/h
    policy = load_policy_with(top(speeds_kmh={"car": 25}))
    assert policy.speeds_kmh["car"] == 25
    assert travel_time_s(1000.0, "drone", policy) == pytest.approx(1300.0 / (40 / 3.6))


def test_a_category_the_file_adds_is_accepted_with_its_follow_up() -> None:
    policy = load_policy_with(lambda d: (
        d["categories"].update({"drone_sighting": {"priority": "P3", "units": 1,
                                                   "answer": ["volunteer", "security"]}}),
        d["followup_days"].update({"drone_sighting": 3})))
    assert policy.classify("drone_sighting", ()) == "P3"
    assert policy.followup_days["drone_sighting"] == 3


INTERVALS = {"handover_retry_min": 15, "followup_retry_h": 1, "reinforce_retry_s": 20,
             "followup_default_days": 7}


def test_a_file_that_leaves_the_retry_intervals_out_keeps_designs() -> None:
    # A deployment's file written before these keys existed: the hand-over retried every
    # 15 minutes, a visit in an hour, a backup every 20 s, a revisit after 7 days.
    policy = load_policy_with(lambda d: [d.pop(key) for key in INTERVALS])
    assert {key: getattr(policy, key) for key in INTERVALS} == INTERVALS


def test_the_shipped_file_lists_every_key_of_the_policy_with_designs_value() -> None:
    # What an administrator copies is the whole list of what they may tune.
    data = shipped()
    assert set(policy_module.Policy.model_fields) <= set(data), (
        set(policy_module.Policy.model_fields) - set(data))
    assert {key: data[key] for key in INTERVALS} == INTERVALS
