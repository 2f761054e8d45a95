"""Writes the governed definitions as a Cube data model, for teams that run Cube itself.

`python -m semantic.cube_export --out cube/` reads dbt's `semantic_manifest.json` (the one set of
definitions) and writes:

- `model/cubes/<semantic model>.yml`: one cube per semantic model on its mart, with its entities,
  dimensions and measures, joins along shared entities, and one measure per metric (simple metrics
  are their measure; ratios divide two measures; cumulative metrics get a trailing rolling window);
- `model/views/<view>.yml`: the metrics server's views (`orders`, `events`, ...), each with the
  members the server offers in it, named exactly as it names them (`orders.revenue`,
  `orders.user__country`), and `metrics`, every metric and dimension (the view of earlier releases);
- `docker-compose.yml`: the official Cube image on the published DuckDB snapshot.

Limits of the translation are written into the descriptions (a semi-additive MetricFlow measure,
such as MRR, becomes a plain sum in Cube: query it at one day or read it from the server).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from semantic.members import VIEW, Catalog

AGGREGATIONS = {"sum": "sum", "count": "count", "count_distinct": "count_distinct", "average": "avg",
                "min": "min", "max": "max", "sum_boolean": "sum", "median": "number"}
CUBE_IMAGE = "cubejs/cube:v1.3"


def _entity_owner(manifest: dict) -> dict[str, str]:
    """Each entity name -> the semantic model where it is the primary key."""
    return {e["name"]: m["name"] for m in manifest["semantic_models"] for e in m["entities"]
            if e["type"] in ("primary", "unique", "natural")}


def _measure_home(manifest: dict) -> dict[str, str]:
    return {measure["name"]: m["name"] for m in manifest["semantic_models"] for measure in m["measures"]}


def build_cubes(manifest: dict) -> list[dict]:
    owners = _entity_owner(manifest)
    home = _measure_home(manifest)
    measures_by_name = {me["name"]: me for m in manifest["semantic_models"] for me in m["measures"]}
    metrics = {m["name"]: m for m in manifest["metrics"]}
    cubes = []
    for model in manifest["semantic_models"]:
        relation = model["node_relation"]
        cube = {"name": model["name"], "sql_table": f"{relation['schema_name']}.{relation['alias']}",
                "description": model.get("description") or "", "dimensions": [], "measures": [], "joins": []}
        for entity in model["entities"]:
            column = entity.get("expr") or entity["name"]
            cube["dimensions"].append({
                "name": entity["name"], "sql": column, "type": "string",
                "description": entity.get("description") or f"The {entity['name']} key.",
                **({"primary_key": True} if entity["type"] == "primary" else {})})
            owner = owners.get(entity["name"])
            if entity["type"] == "foreign" and owner and owner != model["name"]:
                owner_column = next(e.get("expr") or e["name"] for m in manifest["semantic_models"]
                                    if m["name"] == owner for e in m["entities"] if e["name"] == entity["name"])
                cube["joins"].append({"name": owner, "relationship": "many_to_one",
                                      "sql": f"{{CUBE}}.{column} = {{{owner}}}.{owner_column}"})
        for dim in model["dimensions"]:
            cube["dimensions"].append({
                "name": dim["name"], "sql": dim.get("expr") or dim["name"],
                "type": "time" if dim["type"] == "time" else "string", "description": dim.get("description") or ""})
        for measure in model["measures"]:
            note = (" Semi-additive in MetricFlow (last value over time): in Cube, query it at one day."
                    if measure.get("non_additive_dimension") else "")
            cube["measures"].append({
                "name": f"{measure['name']}_measure", "sql": measure.get("expr") or measure["name"],
                "type": AGGREGATIONS[measure["agg"]], "description": (measure.get("description") or "") + note})
        for metric in metrics.values():
            params = metric["type_params"]
            if metric["type"] in ("simple", "cumulative") and home.get(params["measure"]["name"]) == model["name"]:
                base = measures_by_name[params["measure"]["name"]]
                entry = {"name": metric["name"], "title": metric.get("label") or metric["name"],
                         "sql": base.get("expr") or base["name"], "type": AGGREGATIONS[base["agg"]],
                         "description": metric.get("description") or ""}
                window = (params.get("cumulative_type_params") or {}).get("window")
                if metric["type"] == "cumulative" and window:
                    entry["rolling_window"] = {"trailing": f"{window['count']} {window['granularity']}"}
                cube["measures"].append(entry)
            elif metric["type"] == "ratio" and _ratio_models(metric, metrics, home) == {model["name"]}:
                numerator, denominator = params["numerator"]["name"], params["denominator"]["name"]
                cube["measures"].append({
                    "name": metric["name"], "title": metric.get("label") or metric["name"], "type": "number",
                    "sql": f"1.0 * {_ref(numerator, metrics, home)} / NULLIF({_ref(denominator, metrics, home)}, 0)",
                    "description": metric.get("description") or ""})
        if not cube["joins"]:
            del cube["joins"]
        cubes.append(cube)
    cubes += [cross_model_ratio_cube(metric, manifest) for metric in metrics.values()
              if metric["type"] == "ratio" and len(_ratio_models(metric, metrics, home)) > 1]
    return cubes


def _ref(metric_name: str, metrics: dict, home: dict) -> str:
    measure = metrics[metric_name]["type_params"]["measure"]["name"]
    return f"{{{home[measure]}.{metric_name}}}"


def _ratio_models(metric: dict, metrics: dict, home: dict) -> set[str]:
    """The semantic models a ratio's numerator and denominator come from."""
    return {home[metrics[metric["type_params"][part]["name"]]["type_params"]["measure"]["name"]]
            for part in ("numerator", "denominator")}


def cross_model_ratio_cube(metric: dict, manifest: dict) -> dict:
    """A ratio of measures from two unjoined models, as a cube over both aggregated by day and shared entities.

    Cube cannot divide measures of cubes without a join path (spend and signups meet only
    through tenant and channel), so the export aggregates each side to the day and the entities
    they share, and joins those.
    """
    metrics = {m["name"]: m for m in manifest["metrics"]}
    models = {m["name"]: m for m in manifest["semantic_models"]}
    measures = {me["name"]: (m, me) for m in manifest["semantic_models"] for me in m["measures"]}
    sides = []
    for part in ("numerator", "denominator"):
        model, measure = measures[metrics[metric["type_params"][part]["name"]]["type_params"]["measure"]["name"]]
        sides.append((part, model, measure))
    shared = sorted(set.intersection(*({e["name"] for e in model["entities"]} for _, model, _ in sides)))
    selects = []
    for part, model, measure in sides:
        time_dim = model["defaults"]["agg_time_dimension"]
        time_expr = next(d.get("expr") or d["name"] for d in model["dimensions"] if d["name"] == time_dim)
        keys = [next(e.get("expr") or e["name"] for e in model["entities"] if e["name"] == name) for name in shared]
        agg = {"count": "count", "sum": "sum", "count_distinct": "count(distinct"}[measure["agg"]]
        value = f"{agg}({measure.get('expr') or measure['name']}){')' if agg.endswith('distinct') else ''}"
        relation = models[model["name"]]["node_relation"]
        selects.append(f"select cast({time_expr} as date) as date_day, "
                       + "".join(f"{k} as {n}, " for k, n in zip(keys, shared, strict=True))
                       + f"{value} as {part} from {relation['schema_name']}.{relation['alias']} "
                       + "group by " + ", ".join(str(i + 1) for i in range(len(shared) + 1)))
    columns = ", ".join(["date_day", *shared])
    sql = (f"select {columns}, sum(numerator) as numerator, sum(denominator) as denominator from ("
           f"select {columns}, numerator, 0 as denominator from ({selects[0]}) as n union all "
           f"select {columns}, 0 as numerator, denominator from ({selects[1]}) as d) as both_sides "
           f"group by {columns}")
    return {
        "name": metric["name"], "sql": sql,
        "description": f"{metric.get('description') or ''} Both sides aggregated by day and {', '.join(shared)}.",
        "dimensions": [{"name": "key", "sql": "date_day || '|' || " + " || '|' || ".join(shared), "type": "string",
                        "primary_key": True, "description": "The day and shared entities."},
                       {"name": "date_day", "sql": "date_day", "type": "time", "description": "The day."},
                       *({"name": n, "sql": n, "type": "string", "description": f"The {n} key."} for n in shared)],
        "measures": [{"name": metric["name"], "title": metric.get("label") or metric["name"], "type": "number",
                      "sql": "1.0 * SUM({CUBE}.numerator) / NULLIF(SUM({CUBE}.denominator), 0)",
                      "description": metric.get("description") or ""}],
    }


def build_view(cubes: list[dict], manifest: dict, name: str = VIEW, description: str = "",
               members: set[str] | None = None) -> dict:
    """A view: each metric once, and each dimension under the metrics server's name (only `members`,
    where given)."""
    metric_names = {m["name"] for m in manifest["metrics"]}
    only = members
    includes = []
    for cube in cubes:
        members = [{"name": m["name"], "alias": m["name"]} for m in cube["measures"] if m["name"] in metric_names]
        model = next((m for m in manifest["semantic_models"] if m["name"] == cube["name"]), None)
        if model is None:  # a cube made for a cross-model ratio: only its measure belongs in the view
            includes.append({"join_path": cube["name"], "includes": members})
            continue
        primary = {e["name"] for e in model["entities"] if e["type"] == "primary"}
        foreign = {e["name"] for e in model["entities"] if e["type"] != "primary"}
        for dim in cube["dimensions"]:
            if dim["name"] in primary:
                members.append({"name": dim["name"], "alias": dim["name"]})
            elif dim["name"] not in foreign and dim["type"] != "time":
                members.append({"name": dim["name"], "alias": f"{_primary(cube, manifest)}__{dim['name']}"})
        if members:
            includes.append({"join_path": cube["name"], "includes": members})
    if only is not None:
        # a dimension the server reaches through another entity (user__channel__is_paid) is the same
        # member as the direct one (channel__is_paid), under the server's longer name
        direct = {m["alias"]: part["join_path"] for part in includes for m in part["includes"]}
        for name in sorted(only - direct.keys()):
            shorter = "__".join(name.split("__")[-2:])
            for part in includes:
                for member in list(part["includes"]):
                    if member["alias"] == shorter:
                        part["includes"].append({"name": member["name"], "alias": name})
        includes = [{**part, "includes": [m for m in part["includes"] if m["alias"] in only]} for part in includes]
        includes = [part for part in includes if part["includes"]]
    return {"views": [{"name": name, "cubes": includes,
                       "description": description or "Every governed metric, named as the metrics server names it."}]}


def _primary(cube: dict, manifest: dict) -> str:
    model = next(m for m in manifest["semantic_models"] if m["name"] == cube["name"])
    return next(e["name"] for e in model["entities"] if e["type"] == "primary")


def docker_compose() -> dict:
    return {"services": {"cube": {
        "image": CUBE_IMAGE,
        "ports": ["4000:4000", "15432:15432"],
        "environment": {
            "CUBEJS_DB_TYPE": "duckdb",
            # a published snapshot, copied (or linked) next to this file as warehouse.duckdb
            "CUBEJS_DB_DUCKDB_DATABASE_PATH": "/cube/conf/warehouse.duckdb",
            "CUBEJS_API_SECRET": "${SEMANTIC_API_SECRET:?set SEMANTIC_API_SECRET}",
            "CUBEJS_DEV_MODE": "true",
            "CUBEJS_PG_SQL_PORT": "15432",
        },
        "volumes": [".:/cube/conf"],
    }}}


def export(manifest_path: Path, out: Path, catalog: Catalog | None = None) -> list[Path]:
    """The Cube model; with the metrics server's `catalog`, its views too."""
    manifest = json.loads(manifest_path.read_text())
    cubes = build_cubes(manifest)
    written = []
    (out / "model" / "cubes").mkdir(parents=True, exist_ok=True)
    (out / "model" / "views").mkdir(parents=True, exist_ok=True)
    for cube in cubes:
        path = out / "model" / "cubes" / f"{cube['name']}.yml"
        path.write_text(yaml.safe_dump({"cubes": [cube]}, sort_keys=False))
        written.append(path)
    view = out / "model" / "views" / f"{VIEW}.yml"
    view.write_text(yaml.safe_dump(build_view(cubes, manifest), sort_keys=False))
    written.append(view)
    for served in (catalog.views.values() if catalog is not None else ()):
        offered = {m.metric for m in served.measures.values()}
        offered |= {d.group_by for d in served.dimensions.values() if d.type != "time"}
        path = out / "model" / "views" / f"{served.name}.yml"
        path.write_text(yaml.safe_dump(build_view(cubes, manifest, served.name, served.description, offered),
                                       sort_keys=False))
        written.append(path)
    compose = out / "docker-compose.yml"
    compose.write_text(yaml.safe_dump(docker_compose(), sort_keys=False))
    return [*written, compose]


def main() -> None:
    from semantic.settings import ServingSettings, SettingsError

    parser = argparse.ArgumentParser(description="Write the governed metrics as a Cube data model, with the "
                                                 "views the metrics server offers on the published data.")
    parser.add_argument("--out", type=Path, default=Path("cube"))
    args = parser.parse_args()
    try:
        settings = ServingSettings.from_environment(require_secret=False)  # no token: it reads what was published
    except (SettingsError, ValueError) as exc:
        raise SystemExit(f"semantic.cube_export: {exc}") from None
    for path in export(settings.semantic_manifest, args.out, settings.service().catalog):
        print(path)


if __name__ == "__main__":
    main()
