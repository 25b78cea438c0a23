"""Compile a typed StoreQuery into SQLite SQL: one small compiler per search parameter type.

Every compiler returns `(sql, params)` for a boolean expression over the resource row alias it
is given; the semantics are those of `fhir_server.search.query` (its module docstring).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir_server.search.query import (
    ChainCondition,
    CompartmentCondition,
    Condition,
    Cursor,
    DateCondition,
    HasCondition,
    MissingCondition,
    NumberCondition,
    QuantityCondition,
    RangeValue,
    ReferenceCondition,
    SortSpec,
    StoreQuery,
    StringCondition,
    TokenCondition,
    UriCondition,
)

Sql = tuple[str, list[Any]]

_TABLE_OF_TYPE = {
    "string": "idx_string",
    "token": "idx_token",
    "date": "idx_date",
    "reference": "idx_reference",
    "number": "idx_number",
    "quantity": "idx_quantity",
    "uri": "idx_uri",
}


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Row(str):
    """The alias of the `resources` row a condition is compiled over (`r`, `t`, `s`), carrying
    which form its index conditions take: the driving `seq IN (...)` list, or an EXISTS probe
    (`_in_index`). A `str`, so it formats into SQL as the alias itself."""

    driving: bool

    def __new__(cls, alias: str, driving: bool = True) -> Row:
        """`alias` with its form."""
        row = super().__new__(cls, alias)
        row.driving = driving
        return row


def _in_index(alias: Row, table: str, rtype: str, param: str, where: str, args: list[Any]) -> Sql:
    """Membership of the resource in an index selection.

    The driving (most selective) condition is a `seq IN (...)` list read through the `_q`
    index; every other condition is an EXISTS probe of the current row through the covering
    `_probe` index, so large unselective lists (`start=ge...`) are never materialised.
    """
    if alias.driving:
        sql = (
            f"{alias}.seq IN (SELECT seq FROM {table} "
            f"WHERE res_type = ? AND param = ? AND ({where}))"
        )
        return sql, [rtype, param, *args]
    sql = f"EXISTS (SELECT 1 FROM {table} WHERE seq = {alias}.seq AND param = ? AND ({where}))"
    return sql, [param, *args]


def _prefix_range(column: str, value: str) -> Sql:
    """`column` starts with `value`, written as an index-friendly range."""
    if not value:
        return "1", []
    return f"({column} >= ? AND {column} < ?)", [value, value + "\U0010ffff"]


def _string(alias: Row, rtype: str, cond: StringCondition) -> Sql:
    parts: list[str] = []
    args: list[Any] = []
    for value in cond.values:
        if cond.modifier == "exact":
            parts.append("exact = ?")
            args.append(value)
        elif cond.modifier == "contains":
            parts.append("norm LIKE ? ESCAPE '\\'")
            args.append(f"%{_like_escape(value)}%")
        else:
            sql, a = _prefix_range("norm", value)
            parts.append(sql)
            args.extend(a)
    return _in_index(alias, "idx_string", rtype, cond.param, " OR ".join(parts), args)


def _token(alias: Row, rtype: str, cond: TokenCondition) -> Sql:
    parts: list[str] = []
    args: list[Any] = []
    for value in cond.values:
        if cond.text:
            sql, a = _prefix_range("text", value.code or "")
            parts.append(sql)
            args.extend(a)
            continue
        clause: list[str] = []
        if value.system is None:
            clause.append("system IS NULL")
        elif value.system != "*":
            clause.append("system = ?")
            args.append(value.system)
        if value.code is not None:
            clause.append("code = ?")
            args.append(value.code)
        parts.append("(" + (" AND ".join(clause) or "1") + ")")
    sql, a = _in_index(alias, "idx_token", rtype, cond.param, " OR ".join(parts), args)
    if cond.negate:
        sql = f"NOT ({sql})"
    return sql, a


def _range_clause(low_col: str, high_col: str, rv: RangeValue) -> Sql:
    low, high = rv.low, rv.high
    match rv.prefix:
        case "eq":
            return f"(? <= {low_col} AND {high_col} <= ?)", [low, high]
        case "ne":
            return f"NOT (? <= {low_col} AND {high_col} <= ?)", [low, high]
        case "gt":
            return f"{high_col} > ?", [high]
        case "ge":
            return f"{high_col} > ?", [low]
        case "lt":
            return f"{low_col} < ?", [low]
        case "le":
            return f"{low_col} < ?", [high]
        case "sa":
            return f"{low_col} >= ?", [high]
        case "eb":
            return f"{high_col} <= ?", [low]
        case _:  # ap: overlap with the (already widened) range
            return f"({low_col} < ? AND {high_col} > ?)", [high, low]


def _point_clause(col: str, rv: RangeValue) -> Sql:
    match rv.prefix:
        case "eq" | "ap":
            return f"(? <= {col} AND {col} < ?)", [rv.low, rv.high]
        case "ne":
            return f"NOT (? <= {col} AND {col} < ?)", [rv.low, rv.high]
        case "gt" | "sa":
            return f"{col} > ?", [rv.low]
        case "ge":
            return f"{col} >= ?", [rv.low]
        case "lt" | "eb":
            return f"{col} < ?", [rv.low]
        case _:  # le
            return f"{col} <= ?", [rv.low]


def _or_of(clauses: list[Sql]) -> Sql:
    sql = " OR ".join(f"({c})" for c, _ in clauses)
    return sql, [a for _, args in clauses for a in args]


def _date(alias: Row, rtype: str, cond: DateCondition) -> Sql:
    where, args = _or_of([_range_clause("low", "high", rv) for rv in cond.values])
    return _in_index(alias, "idx_date", rtype, cond.param, where, args)


def _number(alias: Row, rtype: str, cond: NumberCondition) -> Sql:
    where, args = _or_of([_point_clause("value", rv) for rv in cond.values])
    return _in_index(alias, "idx_number", rtype, cond.param, where, args)


def _quantity(alias: Row, rtype: str, cond: QuantityCondition) -> Sql:
    clauses: list[Sql] = []
    for qv in cond.values:
        sql, args = _point_clause("value", qv.range)
        if qv.system is not None and qv.system != "*":
            sql += " AND system = ?"
            args.append(qv.system)
        if qv.code is not None:
            sql += " AND (code = ? OR unit = ?)"
            args.extend([qv.code, qv.code])
        clauses.append((sql, args))
    where, args = _or_of(clauses)
    return _in_index(alias, "idx_quantity", rtype, cond.param, where, args)


def _reference(alias: Row, rtype: str, cond: ReferenceCondition) -> Sql:
    clauses: list[Sql] = []
    for rv in cond.values:
        if cond.identifier:
            sql, args = "id_value = ?", [rv.identifier_value]
            if rv.identifier_system is None:  # `|value`: an identifier without a system
                sql += " AND id_system IS NULL"
            elif rv.identifier_system != "*":
                sql += " AND id_system = ?"
                args.append(rv.identifier_system)
        elif rv.ref_id is not None:
            sql, args = "ref_id = ?", [rv.ref_id]
            if rv.ref_type is not None:
                sql += " AND ref_type = ?"
                args.append(rv.ref_type)
        else:
            sql, args = "url = ?", [rv.url]
        clauses.append((sql, args))
    where, args = _or_of(clauses)
    return _in_index(alias, "idx_reference", rtype, cond.param, where, args)


def _uri(alias: Row, rtype: str, cond: UriCondition) -> Sql:
    clauses: list[Sql] = []
    for value in cond.values:
        if cond.modifier == "below":
            clauses.append(_prefix_range("value", value))
        elif cond.modifier == "above":
            clauses.append(("substr(?, 1, length(value)) = value", [value]))
        else:
            clauses.append(("value = ?", [value]))
    where, args = _or_of(clauses)
    return _in_index(alias, "idx_uri", rtype, cond.param, where, args)


def _missing(alias: Row, rtype: str, cond: MissingCondition) -> Sql:
    table = _TABLE_OF_TYPE[cond.param_type]
    op = "NOT IN" if cond.missing else "IN"
    sql = f"{alias}.seq {op} (SELECT seq FROM {table} WHERE res_type = ? AND param = ?)"
    return sql, [rtype, cond.param]


def _chain(alias: Row, rtype: str, cond: ChainCondition) -> Sql:
    inner_sql, inner_args = compile_condition("t", cond.target_type, cond.inner)
    sql = (
        f"{alias}.seq IN (SELECT seq FROM idx_reference WHERE res_type = ? AND param = ? "
        "AND ref_type = ? AND ref_id IN (SELECT t.res_id FROM resources t "
        f"WHERE t.res_type = ? AND t.deleted = 0 AND ({inner_sql})))"
    )
    return sql, [rtype, cond.param, cond.target_type, cond.target_type, *inner_args]


def _has(alias: Row, rtype: str, cond: HasCondition) -> Sql:
    inner_sql, inner_args = compile_condition("s", cond.source_type, cond.inner)
    sql = (
        f"{alias}.res_id IN (SELECT x.ref_id FROM idx_reference x JOIN resources s "
        "ON s.seq = x.seq WHERE x.res_type = ? AND x.param = ? AND x.ref_type = ? "
        f"AND s.deleted = 0 AND ({inner_sql}))"
    )
    return sql, [cond.source_type, cond.source_param, rtype, *inner_args]


def _compartment(alias: Row, _rtype: str, cond: CompartmentCondition) -> Sql:
    return f"{alias}.seq IN (SELECT seq FROM compartments WHERE comp = ?)", [cond.compartment]


_COMPILERS: dict[type, Callable[[Row, str, Any], Sql]] = {
    StringCondition: _string,
    TokenCondition: _token,
    DateCondition: _date,
    NumberCondition: _number,
    QuantityCondition: _quantity,
    ReferenceCondition: _reference,
    UriCondition: _uri,
    MissingCondition: _missing,
    ChainCondition: _chain,
    HasCondition: _has,
    CompartmentCondition: _compartment,
}


def compile_condition(
    alias: str, resource_type: str, cond: Condition, *, driving: bool = True
) -> Sql:
    """Compile one condition to a boolean SQL expression over the `resources` row `alias`;
    `driving` selects the `IN (...)` form (see `_in_index`), else the EXISTS probe form."""
    return _COMPILERS[type(cond)](Row(alias, driving), resource_type, cond)


def selectivity_rank(cond: Condition) -> int:
    """How well a condition narrows a search, 0 best; 99 means it cannot drive (negations,
    `:missing`). A heuristic: compartments, ids and references first, dates last."""
    match cond:
        case CompartmentCondition():
            return 0
        case ReferenceCondition() | ChainCondition() | HasCondition():
            return 1
        case TokenCondition(negate=True) | MissingCondition():
            return 99
        case TokenCondition(param="_id" | "identifier"):
            return 1
        case TokenCondition() | StringCondition(modifier="exact") | UriCondition(modifier=""):
            return 3
        case StringCondition() | UriCondition():
            return 4
        case _:
            return 5


def compile_where(alias: str, resource_type: str, conditions: tuple[Condition, ...]) -> Sql:
    """The WHERE clause (without the keyword) selecting current matches of all conditions.

    The most selective condition drives (an `IN` list); the others probe each candidate row.
    """
    parts = [f"{alias}.res_type = ?", f"{alias}.deleted = 0"]
    args: list[Any] = [resource_type]
    ranked = sorted(range(len(conditions)), key=lambda i: selectivity_rank(conditions[i]))
    driver = ranked[0] if ranked and selectivity_rank(conditions[ranked[0]]) < 99 else None
    for i, cond in enumerate(conditions):
        sql, a = compile_condition(alias, resource_type, cond, driving=i == driver)
        parts.append(f"({sql})")
        args.extend(a)
    return " AND ".join(parts), args


def _sort_columns(
    sort: tuple[SortSpec, ...],
) -> tuple[list[str], list[Any], list[tuple[str, bool]]]:
    """LEFT JOINs for the sort keys and the ordered components `(expression, descending)`."""
    joins: list[str] = []
    args: list[Any] = []
    components: list[tuple[str, bool]] = []
    for i, spec in enumerate(sort):
        joins.append(f"LEFT JOIN idx_sort s{i} ON s{i}.seq = r.seq AND s{i}.param = ?")
        args.append(spec.param)
        column = f"s{i}.desc_value" if spec.descending else f"s{i}.asc_value"
        components.append((f"({column} IS NULL)", False))
        components.append((column, spec.descending))
    components.append(("r.seq", False))
    return joins, args, components


def _keyset(components: list[tuple[str, bool]], cursor: Cursor) -> Sql:
    """Rows strictly after (or before) the cursor row in the order of `components`."""
    values: list[Any] = []
    for v in cursor.values:
        values.extend([1 if v is None else 0, v])
    values.append(cursor.seq)
    ors: list[str] = []
    args: list[Any] = []
    for i, (expr, desc) in enumerate(components):
        eqs = [f"{components[j][0]} IS ?" for j in range(i)]
        op = ">" if desc != cursor.after else "<"  # after&asc and before&desc read upwards
        if values[i] is None:
            continue  # nothing is strictly beyond a NULL within equal null flags
        ors.append("(" + " AND ".join([*eqs, f"{expr} {op} ?"]) + ")")
        args.extend([*values[:i], values[i]])
    return "(" + (" OR ".join(ors) or "0") + ")", args


def compile_search(query: StoreQuery) -> tuple[Sql, int]:
    """Compile a page query; returns `(sql, args)` and the number of sort components.

    The selected columns are `seq, res_type, res_id, version_id, last_updated, method,
    content`, then one value per SortSpec (the cursor values), in page order.
    """
    joins, join_args, components = _sort_columns(query.sort)
    where, where_args = compile_where("r", query.resource_type, query.conditions)
    args = [*join_args, *where_args]
    if query.cursor is not None:
        ks, ks_args = _keyset(components, query.cursor)
        where += " AND " + ks
        args.extend(ks_args)
    reverse = query.cursor is not None and not query.cursor.after
    order = ", ".join(f"{expr} {'DESC' if desc != reverse else 'ASC'}" for expr, desc in components)
    sort_values = "".join(f", {components[2 * i + 1][0]}" for i in range(len(query.sort)))
    sql = (
        "SELECT r.seq, r.res_type, r.res_id, r.version_id, r.last_updated, r.method, "
        f"r.content{sort_values} FROM resources r {' '.join(joins)} WHERE {where} "
        f"ORDER BY {order} LIMIT ?"
    )
    args.append(query.count + 1)
    return (sql, args), len(query.sort)
