"""How large a YAML document may expand: aliases (``*name``) reuse a node, so a
few lines of nested aliases describe billions of values (a "billion laughs"
document). ``yaml.safe_load`` builds them as shared objects, cheaply; whatever
walks the result next (validation, error messages) expands them. Specs and
``--set`` values are therefore counted as expanded, on the node tree, before
anything walks them."""

from __future__ import annotations

import yaml

from regtune.errors import SpecError

__all__ = ["MAX_YAML_VALUES", "TOO_LARGE", "check_expansion"]

#: The most values (scalars, mappings and sequences, each alias use counted
#: again) a spec or ``--set`` value may expand to; real specs hold a few hundred.
MAX_YAML_VALUES = 10_000
TOO_LARGE = (
    "{where}: the YAML expands to more than {limit} values (aliases reused inside "
    "aliases?); a spec or --set value may hold at most {limit}"
)


def check_expansion(node: yaml.Node | None, where: str, limit: int = MAX_YAML_VALUES) -> None:
    """Refuse a node tree that expands to more than ``limit`` values.

    Counts every node as often as it is reached (an alias's target each time
    it is used), and stops at ``limit + 1``, so the count costs at most that
    many steps whatever the document.

    Raises:
        SpecError: :data:`TOO_LARGE`, naming ``where``.
    """
    stack = [] if node is None else [node]
    seen = 0
    while stack:
        current = stack.pop()
        seen += 1
        if seen > limit:
            raise SpecError(TOO_LARGE.format(where=where, limit=limit))
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                stack.extend((key, value))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
