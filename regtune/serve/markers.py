"""Does a rolled-back canary stay rolled back when Serve restarts its replica?

A replica's :class:`~regtune.serve.rollout.RolloutState` lives in memory, and
Serve rebuilds a replica that died (or failed its health check) from the
deployment's arguments, which still say ``canary_weight``. So a rollback is
also written as a small JSON marker next to the model in the registry::

    <registry>/<name>/.serve/<deployment id>/canary-v<N>.json

and a replica that starts finds it and serves with the canary rolled back.
The deployment id is made once per ``build_app`` call (one ``regtune serve``,
``serve run`` or ``serve deploy``) and travels in the deployment's arguments,
so a restarted replica of that deployment shares it while a new deployment
starts its canary afresh. The registry ignores dot-folders, so markers never
look like versions.

A registry the replicas cannot write to (read-only credentials, say) keeps
the rollback in memory only: the failure is logged, serving goes on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from regtune.platform.registry.store import Place, place_of

__all__ = ["MARKER_DIR", "RollbackMarker"]

#: The folder of markers inside a model's registry folder (ignored by the registry).
MARKER_DIR = ".serve"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RollbackMarker:
    """The rollback marker of one deployment's canary: ``place`` / ``file``."""

    place: Place
    file: str

    @classmethod
    def at(cls, registry: str, name: str, deployment: str, canary: int) -> RollbackMarker:
        """The marker of canary version ``canary`` of model ``name`` in ``deployment``."""
        place = place_of(registry).child(name, MARKER_DIR, deployment)
        return cls(place, f"canary-v{canary}.json")

    def load(self) -> dict[str, Any] | None:
        """The rollback entry written by an earlier replica, or None (also when unreadable)."""
        try:
            data = self.place.read(self.file)
            entry = None if data is None else json.loads(data)
        except (OSError, ValueError, RecursionError) as exc:
            _log.warning("regtune serve: cannot read %s (%s)", self.place.display(self.file), exc)
            return None
        return entry if isinstance(entry, dict) else None

    def save(self, entry: dict[str, Any]) -> None:
        """Write the rollback entry; a failure is logged (the rollback holds in memory)."""
        try:
            self.place.write(self.file, json.dumps(entry).encode("utf-8"))
        except (OSError, ValueError) as exc:
            _log.warning(
                "regtune serve: cannot write %s (%s); the rollback holds until the replica "
                "restarts",
                self.place.display(self.file),
                exc,
            )
