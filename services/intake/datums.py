"""Places given in the datum of a Chinese web map taken to WGS-84, the datum of everything
else here (phones' GPS, the zones, Redis GEO): GCJ-02 (AMap, Tencent, Google's China tiles)
and Baidu's BD-09, which lie some 300-700 m off the WGS-84 place. CGCS2000, the datum of
China's own survey and of police GIS, is WGS-84 within centimetres and taken as it is.

GCJ-02 is the published forward transform (WGS-84 to GCJ-02, applied only inside China's
bounding box); its inverse has no closed form and is found by iterating the forward one
until it gives back the place sent (within 1e-9 degree, a tenth of a millimetre).

Written here, not taken from a library: of the packages the registries offer, coord-convert
needs fiona (GDAL) for its command line, coordtransform ships a wheel for CPython 3.11 only,
and both are these same few published formulas (coord-convert's inverse has no bound on its
rounds)."""

from __future__ import annotations

import math
from typing import Literal

Datum = Literal["wgs84", "cgcs2000", "gcj02", "bd09"]

_A = 6378245.0  # the Krasovsky ellipsoid the transform is written for
_EE = 0.00669342162296594323
_BD_PI = math.pi * 3000.0 / 180.0


def _outside_china(lon: float, lat: float) -> bool:
    # the transform's own box: outside it GCJ-02 is WGS-84
    return not (72.004 <= lon <= 137.8347 and 0.8293 <= lat <= 55.8271)


def _shift_lat(x: float, y: float) -> float:
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2 / 3
    ret += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2 / 3
    ret += (160.0 * math.sin(y / 12.0 * math.pi) + 320 * math.sin(y * math.pi / 30.0)) * 2 / 3
    return ret


def _shift_lon(x: float, y: float) -> float:
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2 / 3
    ret += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2 / 3
    ret += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2 / 3
    return ret


def wgs84_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    """(lon, lat) as a GCJ-02 map shows the WGS-84 place (lon, lat)."""
    if _outside_china(lon, lat):
        return lon, lat
    dlat = _shift_lat(lon - 105.0, lat - 35.0)
    dlon = _shift_lon(lon - 105.0, lat - 35.0)
    radlat = lat / 180.0 * math.pi
    magic = 1 - _EE * math.sin(radlat) ** 2
    sqrtmagic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrtmagic) * math.pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * math.cos(radlat) * math.pi)
    return lon + dlon, lat + dlat


def gcj02_to_wgs84(lon: float, lat: float) -> tuple[float, float]:
    """The WGS-84 place a GCJ-02 map shows at (lon, lat)."""
    if _outside_china(lon, lat):
        return lon, lat
    wlon, wlat = lon, lat
    for _ in range(30):  # the shift changes slowly with the place: a few rounds suffice
        glon, glat = wgs84_to_gcj02(wlon, wlat)
        dlon, dlat = glon - lon, glat - lat
        if abs(dlon) < 1e-9 and abs(dlat) < 1e-9:
            break
        wlon, wlat = wlon - dlon, wlat - dlat
    return wlon, wlat


def bd09_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    """The GCJ-02 place Baidu's BD-09 shows at (lon, lat) (Baidu's published inverse)."""
    x, y = lon - 0.0065, lat - 0.006
    z = math.sqrt(x * x + y * y) - 0.00002 * math.sin(y * _BD_PI)
    theta = math.atan2(y, x) - 0.000003 * math.cos(x * _BD_PI)
    return z * math.cos(theta), z * math.sin(theta)


def to_wgs84(datum: Datum, lon: float, lat: float) -> tuple[float, float]:
    """(lon, lat) given in `datum`, in WGS-84."""
    if datum == "gcj02":
        return gcj02_to_wgs84(lon, lat)
    if datum == "bd09":
        if _outside_china(lon, lat):  # Baidu's maps abroad are WGS-84
            return lon, lat
        return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))
    return lon, lat
