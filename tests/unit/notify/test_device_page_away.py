"""How far and which way an order's scene is from the member, on its card (the page's script
run in node, as in test_device_page_day): a camera's or a door alarm's order comes with a
point and no address, two numbers a member on foot cannot walk to."""

from __future__ import annotations

import math

from tests.unit.notify.test_device_page_day import day, deliver, hello, said
from tests.unit.test_pages import ORDER

SCENE = ORDER["location"]  # 22.8, 108.3: no address
METRES_PER_DEGREE = 111_195.0


def fix_at(metres_north: float, metres_east: float) -> str:
    """The phone's position fix `metres_north` and `metres_east` of the scene, taken now."""
    lat = SCENE["lat"] + metres_north / METRES_PER_DEGREE
    lon = SCENE["lon"] + metres_east / (METRES_PER_DEGREE * math.cos(math.radians(SCENE["lat"])))
    return (f"onFix({{ coords: {{ latitude: {lat}, longitude: {lon}, accuracy: 5 }}, "
            "timestamp: Date.now() })")


def test_an_order_without_an_address_says_how_far_and_which_way_it_is() -> None:
    # the member 283 m south and 283 m west of the scene: 400 m to the north-east
    card, closer, there = day(
        f"{hello()}; {fix_at(-283, -283)}; {deliver(ORDER)}; text('o-ord_1')",
        f"{fix_at(-1000, 1800)}; text('o-ord_1')",   # walked off: 2.1 km to the north-west
        f"{fix_at(-20, 10)}; text('o-ord_1')",
    )
    assert said("away", distance=said("metres_away", n=400),
                direction=said("to_north_east")) in card, card
    assert said("away", distance=said("km_away", n="2.1"),
                direction=said("to_north_west")) in closer, closer
    assert said("away_here") in there, there


def test_no_fix_or_an_old_one_says_nothing_of_the_distance() -> None:
    away = said("away", distance="\0", direction="\0").split("\0")[0]  # its first words
    without, stale = day(
        f"{hello()}; {deliver(ORDER)}; text('o-ord_1')",
        f"{fix_at(-283, -283)}; later(121000); "
        f"{deliver({**ORDER, 'order_id': 'ord_2'})}; text('o-ord_2')",
    )
    assert away not in without, without
    assert away not in stale, stale
