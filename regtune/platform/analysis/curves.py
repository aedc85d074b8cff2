"""Learning curves as contiguous segments: per-trial reductions without a Python loop.

The epochs table (one row per ``(trial_id, iteration)``, see
:mod:`regtune.platform.results`) is viewed as one segment of rows per trial,
ordered by iteration. Every per-trial quantity the analysis needs (value at the
best epoch, last value, mean of the last few epochs, count of spikes) is a
``numpy`` ``reduceat`` over those segments, so 10^7 rows cost a few passes over
memory, not 10^5 group-by calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from regtune.errors import DataError

__all__ = [
    "KEY_COLUMNS",
    "MSG_MISSING_COLUMNS",
    "Segments",
    "segment_values",
    "segments",
]

#: The columns every epochs table has (the results contract).
KEY_COLUMNS = ("trial_id", "iteration")

MSG_MISSING_COLUMNS = "epochs table: missing column(s) {missing}; columns present: {present}"


@dataclass(frozen=True)
class Segments:
    """Where each trial's rows are, once rows are ordered by (trial, iteration).

    ``order`` is the row permutation that sorts the table (``None`` when it
    already was sorted), ``starts`` the first sorted row of each trial,
    ``lengths`` its number of epochs and ``trial_ids`` the trial of each
    segment (``str``), in segment order.
    """

    trial_ids: NDArray[np.object_]
    starts: NDArray[np.intp]
    lengths: NDArray[np.intp]
    order: NDArray[np.intp] | None

    @cached_property
    def index(self) -> pd.Index:
        """The trial ids as one shared ``pandas.Index`` named ``trial_id``: the tables
        built from these segments share it, so its hash table is built once."""
        return pd.Index(self.trial_ids.astype(str), name="trial_id")

    def rows_of(self, trial_id: str) -> NDArray[np.intp]:
        """Positions (in the original table) of one trial's rows, by iteration."""
        where = self.index.get_indexer([trial_id])[0]
        if where < 0:
            return np.empty(0, dtype=np.intp)
        rows = np.arange(self.starts[where], self.ends[where], dtype=np.intp)
        return rows if self.order is None else self.order[rows]

    @property
    def n_trials(self) -> int:
        """Number of trials (segments)."""
        return int(self.starts.size)

    @property
    def ends(self) -> NDArray[np.intp]:
        """Index one past the last row of each segment."""
        return self.starts + self.lengths

    @property
    def last(self) -> NDArray[np.intp]:
        """Index of the last row (highest iteration) of each segment."""
        return self.starts + self.lengths - 1

    def segment_of_rows(self) -> NDArray[np.intp]:
        """For each sorted row, the index of its segment."""
        return np.repeat(np.arange(self.n_trials, dtype=np.intp), self.lengths)

    def reduce(self, ufunc: np.ufunc, values: NDArray[np.float64]) -> NDArray[np.float64]:
        """``ufunc.reduceat`` over the segments (an empty table gives an empty result)."""
        if self.n_trials == 0:
            return np.empty(0, dtype=np.float64)
        return np.asarray(ufunc.reduceat(values, self.starts))

    def window_mean(
        self, values: NDArray[np.float64], width: int | NDArray[np.intp], *, tail: bool
    ) -> NDArray:
        """Mean of the first (``tail=False``) or last ``width`` values of each segment,
        non-finite values left out (NaN when none is finite). ``width`` is one number or
        one per segment.

        Reads only ``n_trials x width`` values (a gather, not a pass over every row).
        """
        widths = np.broadcast_to(np.asarray(width, dtype=np.intp), (self.n_trials,))
        rows = (self.ends - 1) if tail else (self.starts + widths - 1)
        return self.mean_ending_at(values, rows, widths)

    def mean_ending_at(
        self, values: NDArray[np.float64], rows: NDArray[np.intp], width: int | NDArray[np.intp]
    ) -> NDArray:
        """Per segment, the mean of the ``width`` values ending at its sorted row
        ``rows[i]`` (that row and the ``width - 1`` before it, never before the segment's
        start), non-finite values left out (NaN when none is finite)."""
        widths = np.broadcast_to(np.asarray(width, dtype=np.intp), (self.n_trials,))
        total = np.zeros(self.n_trials)
        count = np.zeros(self.n_trials)
        for k in range(int(widths.max()) if self.n_trials else 0):
            row = rows - k
            inside = (k < widths) & (row >= self.starts) & (row < self.ends)
            picked = values[np.where(inside, row, self.starts)]
            keep = inside & np.isfinite(picked)
            total += np.where(keep, picked, 0.0)
            count += keep
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def segments(epochs: pd.DataFrame) -> Segments:
    """The per-trial segments of an epochs table.

    Raises:
        DataError: ``trial_id`` or ``iteration`` is missing (the message lists
            the columns present).
    """
    missing = [c for c in KEY_COLUMNS if c not in epochs.columns]
    if missing:
        present = ", ".join(map(str, epochs.columns)) or "(none)"
        raise DataError(MSG_MISSING_COLUMNS.format(missing=", ".join(missing), present=present))
    trial = epochs["trial_id"]
    if isinstance(trial.dtype, pd.CategoricalDtype):
        codes = np.asarray(trial.cat.codes, dtype=np.int64)
        labels = np.asarray(trial.cat.categories.astype(str), dtype=object)
    else:
        codes_, uniques = pd.factorize(trial, sort=False)
        codes = np.asarray(codes_, dtype=np.int64)
        labels = np.asarray(pd.Index(uniques).astype(str), dtype=object)
    iteration = np.asarray(epochs["iteration"], dtype=np.int64)
    order: NDArray[np.intp] | None = None
    if codes.size > 1:
        same = codes[1:] == codes[:-1]
        # Sorted means: each trial's rows contiguous and in increasing iteration;
        # trials themselves may come in any order, as long as none reappears.
        distinct = int(np.count_nonzero(np.bincount(codes[codes >= 0]))) if codes.size else 0
        contiguous = np.count_nonzero(~same) + 1 == distinct + int((codes < 0).any())
        if not (contiguous and np.all(~same | (iteration[1:] > iteration[:-1]))):
            order = np.lexsort((iteration, codes)).astype(np.intp)
            codes = codes[order]
    if codes.size == 0:
        empty = np.empty(0, dtype=np.intp)
        return Segments(np.empty(0, dtype=object), empty, empty, None)
    boundary = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    starts = np.concatenate(([0], boundary)).astype(np.intp)
    lengths = np.diff(np.append(starts, codes.size)).astype(np.intp)
    return Segments(labels[codes[starts]], starts, lengths, order)


def segment_values(epochs: pd.DataFrame, column: str, seg: Segments) -> NDArray[np.float64]:
    """A numeric column as float64, in segment order (missing values as NaN)."""
    series = epochs[column]
    if series.dtype == np.float64:
        values = series.to_numpy()  # no copy for a plain float column
    else:
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values if seg.order is None else values[seg.order]
