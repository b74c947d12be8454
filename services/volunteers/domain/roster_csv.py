"""A roster as CSV exports of a spreadsheet: one file per entity, errors reported by line.

Files (UTF-8, a BOM is fine, or GBK uploaded as a file: api.roster `uploaded_text`;
comma-separated, header row first, column order free):
- agencies: id, name, kind, role (role: police only; empty = station)
- zones: id, name, owner_agency_id, polygon
- teams: id, agency_id, name, mode, skills, home_zone_id (skills separated by `;`)
- members: id, name, agency_id, team_id, role, phone
A zone's polygon is either a JSON list `[[lon, lat], ...]` or WKT `POLYGON ((lon lat, ...))`;
both are lon before lat. Empty cells are absent values; blank lines are skipped. The district,
and the optional `as_of` (when the roster was taken: domain.roster `check_as_of`), come beside
the files.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import Any

from shapely import wkt
from shapely.errors import ShapelyError
from shapely.geometry import MultiPolygon, Polygon

from shared.fieldnames import is_field_name

from .roster import (
    ENTITIES,
    HOLES,
    MAX_ROWS,
    UNNAMED,
    Entity,
    Loc,
    RosterDoc,
    RowError,
    check_as_of,
    check_district,
    check_document,
    parse_row,
)

COLUMNS: dict[Entity, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # entity: (required columns, optional columns)
    "agencies": (("id", "name", "kind"), ("role",)),
    "zones": (("id", "name", "owner_agency_id", "polygon"), ()),
    "teams": (("id", "agency_id", "name", "mode"), ("skills", "home_zone_id")),
    "members": (("id", "name", "agency_id", "team_id", "role"), ("phone",)),
}


def parse_polygon(text: str) -> list[list[float]]:
    """A polygon cell: JSON `[[lon, lat], ...]` or WKT `POLYGON ((lon lat, ...))`."""
    text = text.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
            raise ValueError("is not a JSON list of [lon, lat] pairs") from exc
        if not isinstance(value, list):
            raise ValueError("is not a JSON list of [lon, lat] pairs")
        return value
    if text.startswith("{"):
        raise ValueError("is a JSON object (GeoJSON?): a cell holds the ring, JSON "
                         "[[lon, lat], ...] (a GeoJSON Polygon's coordinates[0]) or WKT POLYGON")
    try:
        shape = wkt.loads(text)
    except (ShapelyError, ValueError) as exc:
        raise ValueError("is neither a JSON list of [lon, lat] pairs nor WKT POLYGON") from exc
    if isinstance(shape, MultiPolygon):
        raise ValueError(f"is a MULTIPOLYGON of {len(shape.geoms)} parts: a zone is one "
                         "POLYGON; import each part as a zone of its own, of the same station")
    if isinstance(shape, Polygon) and list(shape.interiors):
        raise ValueError(f"is a POLYGON with {len(shape.interiors)} hole(s): send its outer "
                         f"ring alone; {HOLES}")
    if not isinstance(shape, Polygon) or shape.is_empty:
        raise ValueError("must be a WKT POLYGON without holes")
    return [[x, y] for x, y, *_ in shape.exterior.coords]


def _cells(entity: Entity, row: Mapping[str, str], loc: Loc,
           errors: list[RowError]) -> dict[str, Any] | None:
    data: dict[str, Any] = {}
    for key, value in row.items():
        value = value.strip()
        if value == "":
            continue
        if entity == "zones" and key == "polygon":
            try:
                data[key] = parse_polygon(value)
            except ValueError as exc:
                errors.append(loc.error(entity, key, str(exc)))
                return None
        elif entity == "teams" and key == "skills":
            data[key] = [s for s in value.split(";") if s.strip()]
        else:
            data[key] = value
    return data


def _parse_file(entity: Entity, text: str, doc: RosterDoc, errors: list[RowError]) -> None:
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        errors.append(RowError(entity, "", "the file is empty", line=1))
        return
    except csv.Error:
        errors.append(RowError(entity, "", "the header row is not valid CSV", line=1))
        return
    columns = [h.strip().lower() for h in header]
    # Excel writes every column of the sheet's used range: one typed in once and cleared
    # comes out with an empty header and nothing under it. Such a column is passed over;
    # a value under it is told on its line (`_stray_cell`).
    blank = [i for i, name in enumerate(columns) if not name]
    required, optional = COLUMNS[entity]
    header_ok = True
    for name in required:
        if name not in columns:
            errors.append(RowError(entity, name, "column is missing", line=1))
            header_ok = False
    unnamed = False
    for name in columns:
        if not name:
            continue
        if name not in required and name not in optional:
            header_ok = False
            if is_field_name(name):
                errors.append(RowError(entity, name or "(empty)", "is not a known column",
                                       line=1))
            elif not unnamed:  # a cell of a first row that is data: its value, not shown
                unnamed = True
                errors.append(RowError(entity, "", "the header row holds a column that is "
                                       "none of the file's (not shown: it is no column name; "
                                       "is the header row missing?)", line=1))
    named = [name for name in columns if name]
    if len(set(named)) != len(named):
        errors.append(RowError(entity, "", "a column appears twice", line=1))
        header_ok = False
    if not header_ok:
        return
    line = reader.line_num + 1
    count = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error:
            errors.append(RowError(entity, "", "is not valid CSV", line=line))
            return
        start, line = line, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue
        count += 1
        if count > MAX_ROWS:
            errors.append(RowError(entity, "", f"has more than {MAX_ROWS} rows", line=start))
            return
        loc = Loc(line=start)
        if len(cells) != len(columns):
            errors.append(loc.error(entity, "", f"has {len(cells)} cells, the header has "
                                                f"{len(columns)}"))
            continue
        if (stray := next((i for i in blank if cells[i].strip()), None)) is not None:
            errors.append(loc.error(entity, "", f"has a value in column {stray + 1}, which "
                                                "has no header: name the column, or clear it"))
            continue
        data = _cells(entity, {c: v for c, v in zip(columns, cells, strict=True) if c}, loc,
                      errors)
        if data is None:
            if cells and cells[columns.index("id")].strip():
                doc.invalid_ids[entity].add(cells[columns.index("id")].strip())
            continue
        parse_row(entity, data, loc, doc)


def parse_csv(district: Any, files: Mapping[str, str], as_of: Any = None) -> RosterDoc:
    """CSV texts by entity name (any subset of the four) -> RosterDoc with any errors it holds
    (raised with the reference errors by `check_references`); `as_of` as the document's."""
    doc = RosterDoc(district="")
    errors = doc.errors
    doc.district = check_district(district, errors)
    doc.as_of = check_as_of(as_of, errors)
    unknown = [name for name in files if name not in ENTITIES]
    for name in unknown:
        errors.append(RowError(name, "", "is not one of agencies, zones, teams, members")
                      if is_field_name(name) else
                      RowError("(files)", "", "a file is named none of agencies, zones, teams, "
                               f"members {UNNAMED}"))
    if not any(name in ENTITIES for name in files):
        errors.append(RowError("(files)", "", "no file named agencies, zones, teams or members"))
    for entity in ENTITIES:
        if entity in files:
            doc.sent.add(entity)
            _parse_file(entity, files[entity], doc, errors)
    check_document(doc, errors)
    return doc
