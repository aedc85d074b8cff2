"""How large a YAML document may expand: aliases (``*name``) reuse a node, so a
few lines of nested aliases describe billions of values (a "billion laughs"
document). ``yaml.safe_load`` builds them as shared objects, cheaply; whatever
walks the result next (validation, error messages) expands them. What aliases add
is therefore counted on the node tree, for specs and ``--set`` values, before
anything walks them."""

from __future__ import annotations

import yaml

from regtune.errors import SpecError

__all__ = ["MAX_YAML_VALUES", "TOO_LARGE", "check_expansion"]

#: The most values (scalars, mappings and sequences) that aliases may add by
#: reuse: each use of an alias counts the values it stands for again. A spec's
#: own values are not limited; real specs reuse a few blocks, if any.
MAX_YAML_VALUES = 100_000
TOO_LARGE = (
    "{where}: the YAML's aliases expand to more than {limit} repeated values (aliases "
    "reused inside aliases?); a spec or --set value may repeat at most {limit} by alias"
)


def check_expansion(node: yaml.Node | None, where: str, limit: int = MAX_YAML_VALUES) -> None:
    """Refuse a node tree whose aliases expand to more than ``limit`` repeated values.

    Walks the tree as it expands, counting every node reached again through an
    alias (with everything under it), and stops at ``limit + 1`` such steps, so
    the check costs at most the tree's own size plus that many steps, whatever
    the document.

    Raises:
        SpecError: :data:`TOO_LARGE`, naming ``where``.
    """
    stack = [] if node is None else [node]
    seen: set[int] = set()
    repeated = 0
    while stack:
        current = stack.pop()
        if id(current) in seen:
            repeated += 1
            if repeated > limit:
                raise SpecError(TOO_LARGE.format(where=where, limit=limit))
        else:
            seen.add(id(current))
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                stack.extend((key, value))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
