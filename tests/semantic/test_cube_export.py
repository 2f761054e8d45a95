"""The Cube data model export: valid YAML, every reference resolves, every metric and dimension present."""

from __future__ import annotations

import re

import yaml

from orchestration.environment import SEMANTIC_MANIFEST
from semantic import snapshots
from semantic.client import MetricsClient
from semantic.cube_export import export
from semantic.members import VIEW
from semantic.publication import DuckDbSnapshots
from semantic.service import MetricsService

MANIFEST = SEMANTIC_MANIFEST


def test_export_is_complete_and_its_references_resolve(tmp_path, server, published):
    publication = DuckDbSnapshots(published.warehouse, published.root / "published")
    export(MANIFEST, tmp_path, MetricsService(publication, MANIFEST, workers=1).catalog)
    cubes = {}
    for path in sorted((tmp_path / "model" / "cubes").glob("*.yml")):
        for cube in yaml.safe_load(path.read_text())["cubes"]:
            cubes[cube["name"]] = cube
    members = {(c, m["name"]) for c, cube in cubes.items() for m in cube["dimensions"] + cube["measures"]}
    for cube in cubes.values():
        assert cube.get("sql_table", "").startswith("marts.") or "from marts." in cube["sql"]
        assert sum(bool(d.get("primary_key")) for d in cube["dimensions"]) == 1, cube["name"]
        for join in cube.get("joins", []):
            assert join["name"] in cubes and join["relationship"] == "many_to_one"
        for measure in cube["measures"]:
            for ref_cube, ref_member in re.findall(r"\{(\w+)\.(\w+)\}", measure.get("sql", "")):
                assert (ref_cube, ref_member) in members, (cube["name"], measure["name"])
                assert ref_cube == cube["name"] or ref_cube in {j["name"] for j in cube.get("joins", [])}

    # every cube's table or query, and every plain column expression, runs on the warehouse
    conn, _ = snapshots.connect_current(published.root / "published")
    with conn:
        for cube in cubes.values():
            source = cube.get("sql_table") or f"({cube['sql']}) as derived"
            for member in cube["dimensions"] + cube["measures"]:
                if "{" not in member["sql"]:
                    conn.execute(f"select {member['sql']} from {source} limit 1").fetchall()

    view = yaml.safe_load((tmp_path / "model" / "views" / f"{VIEW}.yml").read_text())["views"][0]
    aliases = [m["alias"] for part in view["cubes"] for m in part["includes"]]
    assert len(aliases) == len(set(aliases))
    for part in view["cubes"]:
        for member in part["includes"]:
            assert (part["join_path"], member["name"]) in members

    # every metric and dimension of every view the metrics server offers is in that view, under the same name
    with MetricsClient(server.url, server.admin) as client:
        meta = client.meta()["cubes"]
    for served in meta:
        exported = yaml.safe_load((tmp_path / "model" / "views" / f"{served['name']}.yml").read_text())["views"][0]
        aliases = {m["alias"] for part in exported["cubes"] for m in part["includes"]}
        offered = {m["name"].removeprefix(f"{served['name']}.") for m in served["measures"] + served["dimensions"]
                   if m["type"] != "time"}
        assert offered == aliases, (served["name"], offered ^ aliases)

    compose = yaml.safe_load((tmp_path / "docker-compose.yml").read_text())
    service = compose["services"]["cube"]
    assert service["image"].startswith("cubejs/cube:") and service["environment"]["CUBEJS_DB_TYPE"] == "duckdb"
