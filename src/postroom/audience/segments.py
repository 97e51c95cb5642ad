"""Segments: checking condition groups against the team's properties, and compiling them to one SQL expression.

A segment is groups of conditions; a contact matches when, in every group, at least one condition holds (OR
inside a group, AND across groups). A condition's ``field`` is ``email``, ``status`` or a property name, and the
property's type decides which operators apply and how values compare:

=========  ==============================================================================================
type       operators
=========  ==============================================================================================
string     contains, not_contains, equals, not_equals, starts_with, not_starts_with, ends_with,
           not_ends_with (case-insensitive); ``email``, ``status`` and ``json`` properties compare the same way
number     equals, not_equals, greater_than, greater_than_or_equal, less_than, less_than_or_equal (numerically)
boolean    is_true, is_false, equals, not_equals
date       before, after, equals, not_equals, greater_than, greater_than_or_equal, less_than,
           less_than_or_equal (by calendar day)
=========  ==============================================================================================

A contact without a value for a property has its fallback value, if the property has one. A contact with no value
at all matches no positive operator and every ``not_*`` one (``not_equals`` is "not equal to", NULL included).
A condition on a property that was deleted since behaves as if no contact had a value.

The expression runs inside the database (SQLite and PostgreSQL alike); contacts are never loaded to be filtered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Float, String, and_, cast, func, literal, not_, null, or_, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from postroom.audience import queries
from postroom.audience.schemas import CONTACT_STATUSES, MAX_PROPERTY_VALUE, ConditionsInput
from postroom.audience.values import is_date, is_number
from postroom.errors import ValidationFailed
from postroom.models import contacts

TEXT_OPERATORS: Final = (
    "contains", "not_contains", "equals", "not_equals", "starts_with", "not_starts_with", "ends_with",
    "not_ends_with",
)  # fmt: skip
ORDER_OPERATORS: Final = ("greater_than", "greater_than_or_equal", "less_than", "less_than_or_equal")
OPERATORS: Final = (*TEXT_OPERATORS, "is_true", "is_false", *ORDER_OPERATORS, "before", "after")
"""All sixteen operators."""

OPERATORS_BY_TYPE: Final[dict[str, tuple[str, ...]]] = {
    "string": TEXT_OPERATORS,
    "json": TEXT_OPERATORS,
    "number": ("equals", "not_equals", *ORDER_OPERATORS),
    "boolean": ("is_true", "is_false", "equals", "not_equals"),
    "date": ("before", "after", "equals", "not_equals", *ORDER_OPERATORS),
}
VALUELESS: Final = ("is_true", "is_false")
BUILT_IN_FIELDS: Final = ("email", "status")


@dataclass(frozen=True, slots=True)
class FieldType:
    """What a condition's field is: its type and, for a property, its fallback value."""

    kind: str
    fallback: str | None = None
    property_name: str | None = None


def _field_type(field: str, properties: Mapping[str, Any]) -> FieldType | None:
    if field in BUILT_IN_FIELDS:
        return FieldType("string")
    prop = properties.get(field)
    if prop is None:
        return None
    return FieldType(prop.type, prop.fallback_value, prop.name)


def _value_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def check_conditions(conditions: ConditionsInput, properties: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The condition groups as stored (``[{"conditions": [{"field", "operator", "value"}]}]``, values as text),
    or ``ValidationFailed`` naming every bad ``conditions.groups.N.conditions.M.<key>``."""
    errors: dict[str, list[str]] = {}
    groups: list[dict[str, Any]] = []
    for g, group in enumerate(conditions.groups):
        stored = []
        for c, condition in enumerate(group.conditions):
            path = f"conditions.groups.{g}.conditions.{c}"
            value = _value_text(condition.value)
            problem = _problem(condition.field, condition.operator, value, properties)
            if problem is not None:
                key, message = problem
                errors.setdefault(f"{path}.{key}", []).append(message)
            stored.append({"field": condition.field, "operator": condition.operator, "value": value})
        groups.append({"conditions": stored})
    if errors:
        raise ValidationFailed(errors)
    return groups


def _problem(field: str, operator: str, value: str | None, properties: Mapping[str, Any]) -> tuple[str, str] | None:
    field_type = _field_type(field, properties)
    if field_type is None:
        return "field", f"The field '{field}' is not email, status or a property of this team."
    if operator not in OPERATORS:
        return "operator", f"The operator '{operator}' is not one of: {', '.join(OPERATORS)}."
    allowed = OPERATORS_BY_TYPE[field_type.kind]
    if operator not in allowed:
        return "operator", f"The operator '{operator}' does not apply to the {field_type.kind} field '{field}'."
    if operator in VALUELESS:
        return None
    if value is None or value == "":
        return "value", f"The value is required for the operator '{operator}'."
    if len(value) > MAX_PROPERTY_VALUE:
        return "value", f"The value must not be longer than {MAX_PROPERTY_VALUE} characters."
    if field_type.kind == "number" and not is_number(value):
        return "value", f"The value must be a number for the number field '{field}'."
    if field_type.kind == "date" and not is_date(value):
        return "value", f"The value must be an ISO-8601 date for the date field '{field}'."
    if field_type.kind == "boolean" and value not in ("true", "false"):
        return "value", f"The value must be true or false for the boolean field '{field}'."
    if field == "status" and operator in ("equals", "not_equals") and value not in CONTACT_STATUSES:
        return "value", f"The status must be one of: {', '.join(CONTACT_STATUSES)}."
    return None


# -- compiling ------------------------------------------------------------------------------------------------


class PropertyText(ColumnElement[str]):
    """A contact's value for one property, as text (NULL when it has none): ``json_extract`` on SQLite, ``->>``
    on PostgreSQL, without the casts SQLAlchemy's generic JSON accessors add to every row."""

    type = String()
    inherit_cache = True
    _traverse_internals = [("name", InternalTraversal.dp_string)]

    def __init__(self, name: str) -> None:
        self.name = name


@compiles(PropertyText, "sqlite")
def _sqlite_property(element: PropertyText, compiler: SQLCompiler, **kw: Any) -> str:
    path = compiler.process(literal(f'$."{element.name}"'), **kw)
    return f"json_extract({compiler.process(contacts.c.properties, **kw)}, {path})"


@compiles(PropertyText, "postgresql")
def _postgresql_property(element: PropertyText, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(contacts.c.properties, **kw)} ->> {compiler.process(literal(element.name), **kw)})"


def _operand(field: str, field_type: FieldType | None) -> ColumnElement[Any]:
    if field == "email":
        return contacts.c.email
    if field == "status":
        return contacts.c.status
    if field_type is None or field_type.property_name is None:
        return null()
    value: ColumnElement[Any] = PropertyText(field_type.property_name)
    if field_type.fallback is not None:
        value = func.coalesce(value, literal(field_type.fallback))
    return value


def _positive(
    operator: str, field: str, operand: ColumnElement[Any], kind: str, value: str | None
) -> ColumnElement[bool]:
    """The condition without its ``not_``; NULL when the contact has no value."""
    if operator == "is_true":
        return operand == "true"
    if operator == "is_false":
        return operand == "false"
    assert value is not None  # checked when the segment was saved
    if kind == "number":
        number = cast(operand, Float)
        target = float(value)
        return {
            "equals": number == target,
            "greater_than": number > target,
            "greater_than_or_equal": number >= target,
            "less_than": number < target,
            "less_than_or_equal": number <= target,
        }[operator]
    if kind == "date":
        day = func.substr(operand, 1, 10)
        target_day = value[:10]
        return {
            "equals": day == target_day,
            "before": day < target_day,
            "less_than": day < target_day,
            "less_than_or_equal": day <= target_day,
            "after": day > target_day,
            "greater_than": day > target_day,
            "greater_than_or_equal": day >= target_day,
        }[operator]
    if kind == "boolean":
        return operand == value
    # Addresses and statuses are stored lower-case; property values are compared lower-cased.
    text = operand if field in BUILT_IN_FIELDS else func.lower(operand)
    needle = value.lower()
    if operator == "equals":
        return text == needle
    prefix, suffix = {"contains": (True, True), "starts_with": (False, True), "ends_with": (True, False)}[operator]
    return text.like(queries.like_pattern(needle, prefix=prefix, suffix=suffix), escape="\\")


def _condition(condition: Mapping[str, Any], properties: Mapping[str, Any]) -> ColumnElement[bool]:
    field, operator, value = condition["field"], condition["operator"], condition.get("value")
    field_type = _field_type(field, properties)
    operand = _operand(field, field_type)
    kind = field_type.kind if field_type is not None else "string"
    negated = operator.startswith("not_")
    positive = _positive(operator.removeprefix("not_") if negated else operator, field, operand, kind, value)
    if negated:
        # NULL (no value) counts as "not equal", "does not contain", ...
        return not_(func.coalesce(positive, False))
    return positive


def compile_groups(
    groups: Sequence[Mapping[str, Any]], properties: Mapping[str, Any], list_id: str | None
) -> ColumnElement[bool]:
    """One boolean SQL expression over ``contacts`` for a stored segment (team filtering is the caller's)."""
    terms: list[ColumnElement[bool]] = [
        or_(*(_condition(condition, properties) for condition in group["conditions"])) for group in groups
    ]
    if list_id is not None:
        terms.append(queries.in_list(list_id))
    return and_(true(), *terms)
