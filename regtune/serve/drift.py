"""Has the served input drifted from the training inputs? PSI and KS per feature.

The reference is a model version's summary of its training split (written by
the registry): for a numeric feature 101 quantiles ``q_0 .. q_100`` of its raw
values, for a categorical one the share of each category, and the share of
each predicted class. Served records are compared with it over a rolling
window (:class:`DriftMonitor`).

The maths, all pure functions of the reference and the window:

* The reference CDF ``F`` is read off the quantiles: it reaches ``k/100`` at
  ``q_k``, is linear between distinct quantiles, and jumps where quantiles
  repeat (a point mass such as the many zeros of ``capital_gain``). Its
  resolution is therefore 0.01.
* Numeric PSI uses the reference deciles as bin edges (merged where they
  repeat), so each bin expects ``F(e_k) - F(e_{k-1})`` of the values;
  ``PSI = sum((o - e) * ln(o / e))`` with shares floored at :data:`PSI_FLOOR`.
* Categorical PSI compares category shares, plus one bin for categories the
  training split never had (expected share: the floor). A served value is
  placed by the model's own rule (:class:`~regtune.trainables.schema.ValueIndex`,
  canonical values: ``1``, ``1.0`` and ``"1"`` are one category, ``" a "`` is
  ``"a"``), the one ``predict()`` encodes it by, so the monitor and the model
  always agree on which values are known. A :class:`DriftMonitor` given the
  version's schema uses that schema's lookup of each categorical feature (a
  schema stored before canonical values included); without one, the
  reference's category keys are read as canonical values. A missing value
  (None, NaN, NaT) is no category (training had none, and ``predict()``
  refuses it): it counts in the unseen bin.
* KS is ``sup |F_window(x) - F(x)|`` over numeric features, evaluated at every
  window value and reference quantile from both sides (exact for the
  piecewise-linear ``F``). Its critical value at level 0.01 for a window of
  ``n`` values is ``1.628 / sqrt(n)`` (the reference being much larger).
* A discrete feature is not linear between its quantiles: its CDF is a
  staircase, and the quantiles pin it only to within 0.01 (the training CDF at
  a value between ``q_k`` and ``q_{k+1}``, or at a repeated quantile, is
  anywhere from ``k/100`` to ``(k+1)/100``). Read linearly, that uncertainty
  counted as distance, and same-distribution windows of whole-number
  features were flagged about half the time at ``n = 10,000``. So when the
  reference has a point mass (a repeated quantile) or its quantiles are
  nearly all (:data:`WHOLE_SHARE`) whole numbers (:func:`is_discrete`), KS
  is the distance from the window's CDF to the nearest CDF those quantiles
  allow, ``sup max(L(x) - F_window(x), F_window(x) - U(x), 0)`` with
  ``L(x) = max{k/100 : q_k <= x}`` and ``U(x) = min{k/100 : q_k > x}``. It
  never exceeds the distance to the training column's own CDF, so the 0.01
  flag keeps its level; a shift is seen once it exceeds the critical value
  by up to 0.01 more than it would need against an exact CDF.
* References the registry computed from the raw training columns
  (``numeric_source: "raw"``) hold exact values and are used as they are.
  Older references, and those of datasets that carry only the encoded
  float32 rows (``numeric_source`` absent or ``"encoded"``), carry float32
  round-off (``-3e-05`` for 0): for them only, a served value within
  :data:`SNAP_RELATIVE` of the feature's magnitude of a quantile is read as
  that quantile.
* The drift index is the mean PSI over features; the window is "drifting"
  when it reaches :data:`~regtune.serve.settings.DRIFT_INDEX_LIMIT` (configurable). Per feature, PSI
  under 0.1 reads "stable", under 0.25 "moderate", above "shifted" (the usual
  rules of thumb). PSI of a window of ``n`` values from the reference itself
  is about ``(bins - 1) / n``, hence the minimum window before a verdict.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from regtune.platform.registry.meta_checks import SOURCE_RAW
from regtune.serve.settings import DEFAULT_WINDOW, DRIFT_INDEX_LIMIT, MIN_WINDOW
from regtune.trainables.schema import FeatureSchema, ValueIndex

__all__ = [
    "DriftMonitor",
    "DriftWindow",
    "categorical_psi",
    "drift_report",
    "has_round_off",
    "is_discrete",
    "ks_critical",
    "ks_statistic",
    "label_psi",
    "numeric_psi",
    "psi",
    "reference_categories",
    "reference_cdf",
]

#: Shares below this count as this, so an empty bin costs a finite PSI.
PSI_FLOOR = 1e-4
#: PSI rules of thumb: under MODERATE stable, under SHIFTED moderate, else shifted.
PSI_MODERATE = 0.1
PSI_SHIFTED = 0.25
#: KS critical-value coefficient c(alpha) for alpha = 0.01.
KS_C_ALPHA = 1.628
#: Quantile indices used as numeric PSI bin edges (the deciles).
DECILES = tuple(range(10, 100, 10))
#: For a reference rebuilt from float32 rows (``x * scale + center``): a
#: served value this close (relative to the feature's magnitude) to a quantile
#: counts as equal to it, so point masses such as 0 stay point masses.
SNAP_RELATIVE = 1e-6
#: The bin for categories the reference never saw.
UNSEEN = "<unseen>"
#: A numeric reference whose quantiles are at least this share whole numbers is
#: discrete for KS (see the module docstring).
WHOLE_SHARE = 0.9


def psi(expected: np.ndarray, observed: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), PSI_FLOOR)
    o = np.maximum(np.asarray(observed, dtype=np.float64), PSI_FLOOR)
    return float(np.sum((o - e) * np.log(o / e)))


class _Cdf:
    """The reference CDF of one numeric feature; see the module docstring."""

    def __init__(self, quantiles: Sequence[float], *, round_off: bool = False) -> None:
        q = np.asarray(quantiles, dtype=np.float64)
        if q.ndim != 1 or q.size < 2 or not np.all(np.isfinite(q)) or np.any(np.diff(q) < 0):
            raise ValueError("quantiles must be a finite, non-decreasing list of 2 or more values")
        p = np.linspace(0.0, 1.0, q.size)
        self.u, inverse = np.unique(q, return_inverse=True)
        self.lo = np.full(self.u.size, np.inf)
        self.hi = np.full(self.u.size, -np.inf)
        np.minimum.at(self.lo, inverse, p)
        np.maximum.at(self.hi, inverse, p)
        self.q = q
        self.round_off = round_off
        self.tol = SNAP_RELATIVE * max(1.0, float(np.abs(q).max()))
        #: Whether the feature looks discrete (see :func:`is_discrete`): KS then
        #: compares the window with the band of CDFs the quantiles allow.
        self.discrete = _discrete(q, self.u, self.tol if round_off else 0.0)

    def snap(self, values: np.ndarray) -> np.ndarray:
        """Values within float32 round-off of a reference quantile, moved onto it
        (only for a reference built with ``round_off``; exact ones are left alone)."""
        v = np.asarray(values, dtype=np.float64)
        if not self.round_off:
            return v
        right = np.clip(np.searchsorted(self.u, v), 0, self.u.size - 1)
        left = np.clip(right - 1, 0, self.u.size - 1)
        near = np.where(np.abs(self.u[left] - v) < np.abs(self.u[right] - v), left, right)
        return np.where(np.abs(self.u[near] - v) <= self.tol, self.u[near], v)

    def __call__(self, x: np.ndarray, *, left: bool = False) -> np.ndarray:
        """``F(x)``, or its left limit ``F(x-)`` with ``left=True``."""
        u, lo, hi = self.u, self.lo, self.hi
        x = np.asarray(x, dtype=np.float64)
        j = np.searchsorted(u, x, side="right") - 1  # u[j] <= x < u[j + 1]
        out = np.zeros(x.shape)
        above = j >= u.size - 1
        out[above] = 1.0
        inside = (j >= 0) & ~above
        ji = j[inside]
        x0, x1 = u[ji], u[ji + 1]
        # Linear from F(u_j) = hi_j up to the left limit lo_{j+1} at u_{j+1}.
        out[inside] = hi[ji] + (lo[ji + 1] - hi[ji]) * (x[inside] - x0) / (x1 - x0)
        if left:
            # At a quantile value u_j the curve arrives from below at lo_j (the
            # lower end of the jump when u_j is a point mass).
            exact = (j >= 0) & (u[np.clip(j, 0, None)] == x)
            out[exact] = lo[j[exact]]
        return out

    def band(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The least and greatest ``F(x)`` of any CDF whose ``k/100`` quantile is
        ``q_k`` for every k: ``max{k/100 : q_k <= x}`` and ``min{k/100 : q_k > x}``."""
        u = self.u
        j = np.searchsorted(u, np.asarray(x, dtype=np.float64), side="right")  # u[:j] <= x
        lower = np.where(j > 0, self.hi[np.clip(j - 1, 0, None)], 0.0)
        upper = np.where(j < u.size, self.lo[np.clip(j, None, u.size - 1)], 1.0)
        return lower, upper


def _discrete(q: np.ndarray, u: np.ndarray, tol: float) -> bool:
    """A repeated quantile (a point mass of 1 % or more), or quantiles that are
    nearly all (:data:`WHOLE_SHARE`) whole numbers, within ``tol`` (float32
    round-off) or float64 rounding: counts, ages, amounts in whole units. (A
    quantile may fall between two whole values where the training column steps
    from one to the next: numpy interpolates there.)"""
    if u.size < q.size:
        return True
    slack = max(tol, 1e-9 * max(1.0, float(np.abs(u).max())))
    whole = np.abs(q - np.round(q)) <= slack
    return bool(whole.mean() >= WHOLE_SHARE)


def reference_cdf(quantiles: Sequence[float], *, round_off: bool = False) -> _Cdf:
    """The reference CDF of a numeric feature from its quantiles (callable on arrays).

    ``round_off``: the quantiles carry float32 round-off (see the module docstring).
    """
    return _Cdf(quantiles, round_off=round_off)


def has_round_off(reference: Mapping[str, Any]) -> bool:
    """Whether a reference's numeric quantiles were rebuilt from float32 rows."""
    return reference.get("numeric_source") != SOURCE_RAW


def _cdf(quantiles: Sequence[float] | _Cdf) -> _Cdf:
    return quantiles if isinstance(quantiles, _Cdf) else _Cdf(quantiles)


def numeric_psi(quantiles: Sequence[float] | _Cdf, values: Sequence[float]) -> float:
    """PSI of ``values`` against the reference quantiles, binned at the reference deciles."""
    cdf = _cdf(quantiles)
    n = len(cdf.q) - 1
    edges = np.unique(cdf.q[[round(k * n / 100) for k in DECILES]])
    bounds = np.concatenate([[0.0], cdf(edges), [1.0]])
    expected = np.diff(bounds)
    v = cdf.snap(np.asarray(values, dtype=np.float64))
    # Bin k holds (e_{k-1}, e_k]: the number of edges strictly below the value.
    counts = np.bincount(np.searchsorted(edges, v, side="left"), minlength=edges.size + 1)
    return psi(expected, counts / max(v.size, 1))


def is_discrete(quantiles: Sequence[float] | _Cdf) -> bool:
    """Whether KS treats a numeric feature as discrete (see the module docstring)."""
    return _cdf(quantiles).discrete


def ks_statistic(quantiles: Sequence[float] | _Cdf, values: Sequence[float]) -> float:
    """Kolmogorov-Smirnov distance between ``values`` and the reference CDF.

    For a discrete feature (:func:`is_discrete`), the distance to the nearest CDF
    the reference quantiles allow (see the module docstring).
    """
    cdf = _cdf(quantiles)
    v = np.sort(cdf.snap(np.asarray(values, dtype=np.float64)))
    if v.size == 0:
        return 0.0
    points = np.union1d(v, cdf.u)
    if cdf.discrete:
        # Every curve here is a right-continuous step function that jumps only at
        # these points, so its values there are all its values.
        window = np.searchsorted(v, points, side="right") / v.size
        lower, upper = cdf.band(points)
        return float(np.maximum(lower - window, window - upper).clip(min=0.0).max())
    right = np.searchsorted(v, points, side="right") / v.size
    left = np.searchsorted(v, points, side="left") / v.size
    gaps = np.concatenate([np.abs(right - cdf(points)), np.abs(left - cdf(points, left=True))])
    return float(gaps.max())


def ks_critical(n: int) -> float:
    """KS distance above which a window of ``n`` values differs at level 0.01."""
    return KS_C_ALPHA / math.sqrt(max(n, 1))


class _Categories:
    """The reference shares of one categorical feature, over the model's categories."""

    def __init__(
        self, frequencies: Mapping[str, float], index: ValueIndex | None = None, *, what: str
    ) -> None:
        if index is None:
            index = ValueIndex(list(frequencies), legacy=False, what=f"{what} (reference keys)")
        expected = np.zeros(len(index) + 1)
        for key, share in frequencies.items():
            code = index.code(key)
            if code is None:
                raise ValueError(
                    f"{what}: reference category {key!r} is not one of the model's "
                    f"categories {list(index.names)}; the reference and the schema must "
                    "come from one version"
                )
            expected[code] += float(share)
        self.index = index
        self.expected = expected

    def codes(self, values: Iterable[Any]) -> np.ndarray:
        """The bin of each value: its category's position, or the last (unseen) bin for
        a value the model does not know, or a missing one (None, NaN, NaT)."""
        index, unseen = self.index, len(self.index)
        codes = [index.code(v) for v in values]
        return np.array([unseen if c is None else c for c in codes], dtype=np.int64)


def reference_categories(
    frequencies: Mapping[str, float], index: ValueIndex | None = None, *, what: str = "feature"
) -> _Categories:
    """A categorical feature's reference shares, binned as the model places values.

    ``index``: the model's lookup of the feature (``schema.value_index(name)``),
    so drift places each value exactly as ``predict()`` does; None reads the
    reference's keys as canonical values (see the module docstring).

    Raises:
        ValueError: a reference key the model does not know (``what`` names the feature).
        DataError: two reference keys are one canonical value (without ``index``).
    """
    return _Categories(frequencies, index, what=what)


def categorical_psi(
    frequencies: Mapping[str, float] | _Categories, values: Iterable[Any]
) -> tuple[float, float]:
    """PSI of category shares and the share of values the model does not know.

    Values are placed by their canonical form (:func:`reference_categories`);
    a missing value (None, NaN, NaT) is not a category and counts as unseen.
    """
    categories = (
        frequencies
        if isinstance(frequencies, _Categories)
        else _Categories(frequencies, what="feature")
    )
    codes = categories.codes(values)
    counts = np.bincount(codes, minlength=categories.expected.size)
    observed = counts / max(codes.size, 1)
    return psi(categories.expected, observed), float(observed[-1])


def label_psi(shares: Mapping[str, float], labels: Sequence[str]) -> float:
    """PSI of predicted-class shares: ``labels`` are class names as the server answers
    them, compared exactly with the reference's keys (any other name in the last bin)."""
    keys = list(shares)
    index = {k: i for i, k in enumerate(keys)}
    counts = np.zeros(len(keys) + 1)
    for label in labels:
        counts[index.get(label, len(keys))] += 1
    expected = np.array([float(shares[k]) for k in keys] + [0.0])
    return psi(expected, counts / max(len(labels), 1))


def _status(value: float) -> str:
    if value < PSI_MODERATE:
        return "stable"
    return "moderate" if value < PSI_SHIFTED else "shifted"


def drift_report(
    reference: Mapping[str, Any],
    columns: Mapping[str, Sequence[Any]],
    predicted: Sequence[str] = (),
    *,
    index_limit: float = DRIFT_INDEX_LIMIT,
    min_window: int = MIN_WINDOW,
    cdfs: Mapping[str, _Cdf] | None = None,
    categories: Mapping[str, _Categories] | None = None,
) -> dict[str, Any]:
    """Compare a window (``columns``: feature -> raw values) with ``reference``.

    Returns ``{"window", "ready", "drift_index", "drifting", "index_limit",
    "ks_critical", "features": {name: {"kind", "psi", "status", "ks"?,
    "ks_shifted"?, "unseen_share"?}}, "prediction_psi"}``; before
    ``min_window`` records ``drift_index`` is None and ``drifting`` False.
    ``cdfs``: reference CDFs already built, by feature (a monitor keeps them);
    ``categories``: likewise, reference shares of categorical features binned by
    the model's lookup (:func:`reference_categories`); a categorical feature not
    in it reads the reference's keys as canonical values.
    """
    features: Mapping[str, Mapping[str, Any]] = reference.get("features", {})
    n = min((len(v) for v in columns.values()), default=0)
    report: dict[str, Any] = {
        "window": n,
        "ready": n >= min_window,
        "drift_index": None,
        "drifting": False,
        "index_limit": index_limit,
        "ks_critical": ks_critical(n),
        "features": {},
        "prediction_psi": None,
    }
    if not report["ready"]:
        return report
    scores = []
    for name, ref in features.items():
        values = columns.get(name)
        if values is None:
            continue
        entry: dict[str, Any] = {"kind": ref["kind"]}
        if ref["kind"] == "numeric":
            cdf = (
                cdfs[name]
                if cdfs and name in cdfs
                else _Cdf(ref["quantiles"], round_off=has_round_off(reference))
            )
            entry["psi"] = numeric_psi(cdf, values)
            entry["ks"] = ks_statistic(cdf, values)
            entry["ks_shifted"] = entry["ks"] > report["ks_critical"]
        else:
            cats = (
                categories[name]
                if categories and name in categories
                else _Categories(ref["frequencies"], what=f"feature {name!r}")
            )
            entry["psi"], entry["unseen_share"] = categorical_psi(cats, values)
        entry["status"] = _status(entry["psi"])
        scores.append(entry["psi"])
        report["features"][name] = entry
    if scores:
        report["drift_index"] = float(np.mean(scores))
        report["drifting"] = report["drift_index"] >= index_limit
    shares = reference.get("prediction")
    if shares and len(predicted) >= min_window:
        report["prediction_psi"] = label_psi(shares, predicted)
    return report


@dataclass(frozen=True)
class DriftWindow:
    """A copy of a monitor's window: served records and their predicted labels."""

    records: list[Mapping[str, Any]]
    predicted: list[str]


class DriftMonitor:
    """A rolling window of served records and predicted labels, compared on demand.

    ``schema``: the served version's feature schema; categorical values are then
    placed by its lookups, exactly as ``predict()`` encodes them (see the module
    docstring). Without it the reference's keys are read as canonical values.

    Not thread-safe: observe and snapshot on one thread (the replica's event
    loop); :meth:`report_of` a snapshot may run on another.

    Raises:
        ValueError: a categorical reference feature the schema lacks, or whose
            reference categories the schema does not know.
    """

    def __init__(
        self,
        reference: Mapping[str, Any],
        *,
        schema: FeatureSchema | None = None,
        window: int = DEFAULT_WINDOW,
        min_window: int = MIN_WINDOW,
        index_limit: float = DRIFT_INDEX_LIMIT,
    ) -> None:
        self.reference = reference
        self.min_window = min_window
        self.index_limit = index_limit
        features = reference.get("features", {})
        self._names = list(features)
        self._cdfs = {
            name: _Cdf(ref["quantiles"], round_off=has_round_off(reference))
            for name, ref in features.items()
            if ref.get("kind") == "numeric"
        }
        known = set() if schema is None else {c.name for c in schema.categorical}
        self._categories: dict[str, _Categories] = {}
        for name, ref in features.items():
            if ref.get("kind") == "numeric":
                continue
            if schema is not None and name not in known:
                raise ValueError(
                    f"drift reference feature {name!r} is categorical, but the schema's "
                    f"categorical features are {sorted(known)}; the reference and the "
                    "schema must come from one version"
                )
            index = None if schema is None else schema.value_index(name)
            self._categories[name] = _Categories(
                ref["frequencies"], index, what=f"feature {name!r}"
            )
        # Whole records: appending one is O(1); columns are cut out when a report asks.
        self._records: deque[Mapping[str, Any]] = deque(maxlen=window)
        self._predicted: deque[str] = deque(maxlen=window)

    def observe(self, records: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> None:
        """Add validated records and their predicted labels to the window."""
        self._records.extend(records)
        self._predicted.extend(labels)

    def snapshot(self) -> DriftWindow:
        """The current window, copied (O(window) references): :meth:`report_of` can then
        run in another thread while this monitor keeps observing."""
        return DriftWindow(list(self._records), list(self._predicted))

    def report_of(self, window: DriftWindow) -> dict[str, Any]:
        """:func:`drift_report` over a :meth:`snapshot` (reads only immutable state)."""
        columns = {k: [r[k] for r in window.records if k in r] for k in self._names}
        return drift_report(
            self.reference,
            columns,
            window.predicted,
            index_limit=self.index_limit,
            min_window=self.min_window,
            cdfs=self._cdfs,
            categories=self._categories,
        )

    def report(self) -> dict[str, Any]:
        """:func:`drift_report` over the current window."""
        return self.report_of(self.snapshot())
