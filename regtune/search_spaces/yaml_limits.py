"""How large a YAML document may expand: aliases (``*name``) reuse a node, so a
few lines of nested aliases describe billions of values (a "billion laughs"
document). ``yaml.safe_load`` builds them as shared objects, cheaply; whatever
walks the result next (validation, error messages) expands them. What aliases add
is therefore counted on the node tree, for specs and ``--set`` values, before
anything walks them.

How deep a document nests is limited too: PyYAML composes a node tree, and
whatever walks the result next copies and checks it, by recursion, so a line of
a few thousand ``[`` would end in a RecursionError. Nesting is counted on the
parser's events, stopping at the first level past the limit (before the node
tree is built), and then on the node tree with what aliases stand for (an alias
nests its anchor's values where it is used)."""

from __future__ import annotations

import yaml

from regtune.errors import SpecError

__all__ = [
    "MAX_YAML_DEPTH",
    "MAX_YAML_VALUES",
    "TOO_DEEP",
    "TOO_LARGE",
    "check_depth",
    "check_expansion",
    "check_nesting",
    "compose",
]

#: The most values (scalars, mappings and sequences) that aliases may add by
#: reuse: each use of an alias counts the values it stands for again. A spec's
#: own values are not limited; real specs reuse a few blocks, if any.
MAX_YAML_VALUES = 100_000
TOO_LARGE = (
    "{where}: the YAML's aliases expand to more than {limit} repeated values (aliases "
    "reused inside aliases?); a spec or --set value may repeat at most {limit} by alias"
)

#: The most levels of lists and mappings inside each other: a spec's deepest key
#: (``penalties.l2.choice``, a list under it) is four or five levels down.
MAX_YAML_DEPTH = 100
TOO_DEEP = (
    "{where}: lists and mappings nest more than {limit} levels deep{aliases}; "
    "a spec or --set value may nest at most {limit} levels"
)
_ALIASES = " (counting the values its aliases stand for)"
_OPEN = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSE = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def compose(text: str, where: str, *, lines: bool = True) -> yaml.Node | None:
    """``yaml.compose(text)`` with the SafeLoader, refusing a document past the
    limits: :func:`check_nesting` (before composing), then
    :func:`check_expansion` and :func:`check_depth` on the node tree.

    Args:
        text: the YAML document.
        where: names the document in messages (a file, ``--set KEY``).
        lines: name the line of a too deep value (``where:LINE``); off for a
            ``--set`` value, which is one line.

    Raises:
        SpecError: :data:`TOO_DEEP` or :data:`TOO_LARGE`.
        yaml.YAMLError: the text is not YAML.
    """
    check_nesting(text, where, lines=lines)
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    check_expansion(node, where)
    check_depth(node, where, lines=lines)
    return node


def check_nesting(
    text: str, where: str, limit: int = MAX_YAML_DEPTH, *, lines: bool = True
) -> None:
    """Refuse ``text`` whose lists and mappings, as written, nest more than
    ``limit`` levels deep (the document itself is level 1).

    Reads the parser's events (no recursion) and stops at the first one past
    the limit, so a deep document costs only what precedes it (PyYAML scans
    deep flow nesting in quadratic time).

    Raises:
        SpecError: :data:`TOO_DEEP`, naming ``where`` (and the line).
        yaml.YAMLError: the text is not YAML (up to that point).
    """
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, _OPEN):
            depth += 1
            if depth > limit:
                mark = event.start_mark
                at = f"{where}:{mark.line + 1}" if lines and mark is not None else where
                raise SpecError(TOO_DEEP.format(where=at, limit=limit, aliases=""))
        elif isinstance(event, _CLOSE):
            depth -= 1


def check_depth(
    node: yaml.Node | None, where: str, limit: int = MAX_YAML_DEPTH, *, lines: bool = True
) -> None:
    """Refuse a node tree that nests more than ``limit`` levels deep once its
    aliases are expanded (an alias nests everything under its anchor where it
    is used, and aliases may be used inside anchors).

    Each node's height is worked out once, without recursion, so the check
    costs the tree's own size; an alias inside its own anchor (a cycle, which
    :func:`check_expansion` refuses first) counts as too deep.

    Raises:
        SpecError: :data:`TOO_DEEP`, naming ``where`` (and the line of the
            value at level ``limit + 1`` on the deepest path).
    """
    if node is None:
        return
    heights: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    while stack:
        current, done = stack.pop()
        children = _children(current)
        if done:
            open_nodes.discard(id(current))
            heights[id(current)] = 1 + max((heights[id(c)] for c in children), default=0)
            if heights[id(current)] > limit:
                break
            continue
        if id(current) in heights:
            continue
        if id(current) in open_nodes:  # inside itself: infinitely deep
            heights[id(current)] = limit + 1
            break
        if not children:
            heights[id(current)] = 0
            continue
        open_nodes.add(id(current))
        stack.append((current, True))
        stack.extend((child, False) for child in children if id(child) not in heights)
    if heights.get(id(node), 0) <= limit and not open_nodes:
        return
    # The value at level limit + 1 on the deepest path, for its line.
    deepest = node
    for _ in range(limit):
        children = [c for c in _children(deepest) if id(c) in heights or id(c) in open_nodes]
        if not children:
            break
        deepest = max(children, key=lambda c: heights.get(id(c), limit + 1))
    at = f"{where}:{deepest.start_mark.line + 1}" if lines else where
    raise SpecError(TOO_DEEP.format(where=at, limit=limit, aliases=_ALIASES))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


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
