"""Free-energy surfaces from well-tempered metadynamics (PLUMED HILLS and COLVAR files).

Units follow the PLUMED files: energies in kJ/mol (the package's decks say ``ENERGY=kj/mol``),
CVs in their own units, times as written (fs in the package's decks).

**FES from HILLS.** In well-tempered metadynamics the bias converges to
V(s) = -DeltaT/(T + DeltaT) F(s), so F(s) = -(T + DeltaT)/DeltaT V(s) = -gamma/(gamma-1) V(s).
PLUMED writes every hill's height already multiplied by gamma/(gamma-1) (a 5 kJ/mol hill with
gamma = 20 appears as 5.263), so F(s) = -sum_i h_i K_i(s) with the stored heights h_i. K is
PLUMED's kernel as declared in the file header: ``stretched-gaussian`` (the default since
PLUMED 2.8: exp(-r2/2) shifted and rescaled to vanish at r2/2 = 6.25), ``truncated-gaussian``
or a plain Gaussian; r2 = sum_k ((s_k - c_k)/sigma_k)^2. The result agrees with
``plumed sum_hills`` (tested to 0.1 kJ/mol).

**Reweighting** (Tiwary & Parrinello, J. Phys. Chem. B 119, 736 (2015)). A frame at time t
with bias V(s_t, t) gets the weight exp[(V(s_t, t) - c(t))/kT] with
c(t) = kT ln[ int ds exp(gamma V(s,t)/((gamma-1) kT)) / int ds exp(V(s,t)/((gamma-1) kT)) ],
computed on the grid from the hills deposited up to t. Static biases (walls) enter the
weight with their full value. Any CV printed in COLVAR can then be histogrammed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

KB_KJMOL = 0.0083144626  # kJ/mol/K
DP2_CUTOFF = 6.25        # PLUMED's kernel cutoff on r2/2


# ----------------------------------------------------------------------------- reading
def read_plumed_table(path: str | Path):
    """``(fields, data, header)`` of a PLUMED output file (COLVAR, HILLS, fes.dat).

    Handles the ``#! FIELDS`` / ``#! SET`` header, and repeated headers after restarts.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"PLUMED file not found: {path}")
    fields, header, rows = None, {}, []
    for line in path.read_text().splitlines():
        if line.startswith("#!"):
            parts = line.split()
            if len(parts) > 2 and parts[1] == "FIELDS":
                new = parts[2:]
                if fields is not None and new != fields:
                    raise ValueError(f"{path}: the FIELDS header changes mid-file")
                fields = new
            elif len(parts) > 3 and parts[1] == "SET":
                header[parts[2]] = parts[3]
            continue
        if line.startswith("#") or not line.strip():
            continue
        rows.append(line.split())
    if fields is None:
        raise ValueError(f"{path}: no '#! FIELDS' header; not a PLUMED output file")
    try:
        data = np.array(rows, dtype=float).reshape(-1, len(fields))
    except ValueError as err:
        raise ValueError(f"{path}: malformed rows ({err})") from err
    return fields, data, header


@dataclass
class Hills:
    """Deposited Gaussians: ``centers``/``sigmas`` (hills, cvs), stored ``heights``."""

    time: np.ndarray
    cv_names: list
    centers: np.ndarray
    sigmas: np.ndarray
    heights: np.ndarray
    biasfactor: float
    kernel: str = "stretched-gaussian"
    source: str = ""

    @property
    def n_cv(self) -> int:
        return self.centers.shape[1]

    def upto(self, t: float) -> "Hills":
        sel = self.time <= t
        return Hills(self.time[sel], self.cv_names, self.centers[sel], self.sigmas[sel],
                     self.heights[sel], self.biasfactor, self.kernel, self.source)


def read_hills(path: str | Path) -> Hills:
    """Read a PLUMED HILLS file (diagonal Gaussians, any number of CVs)."""
    fields, data, header = read_plumed_table(path)
    if fields[0] != "time" or "height" not in fields:
        raise ValueError(f"{path}: not a HILLS file (fields {fields})")
    sig = [i for i, f in enumerate(fields) if f.startswith("sigma_")]
    if not sig:
        raise ValueError(f"{path}: no sigma_ columns (non-diagonal hills are not supported)")
    names = [fields[i][len("sigma_"):] for i in sig]
    cen = [fields.index(n) for n in names]
    bf = data[:, fields.index("biasf")] if "biasf" in fields else np.ones(len(data))
    if len(bf) and np.ptp(bf) > 1e-9:
        raise ValueError(f"{path}: the bias factor changes between hills")
    return Hills(time=data[:, 0], cv_names=names, centers=data[:, cen], sigmas=data[:, sig],
                 heights=data[:, fields.index("height")],
                 biasfactor=float(bf[0]) if len(bf) else 1.0,
                 kernel=header.get("kerneltype", "gaussian"), source=str(path))


def hills_files(folder: Path) -> list:
    """The hills files of one bias in a run folder: ``HILLS``, or the walkers' ``HILLS.k``
    (PLUMED's multiple walkers), in walker order; empty when there are none (independent
    walkers keep theirs in ``walker_KK/HILLS``: each such folder is its own bias)."""
    folder = Path(folder)
    if (folder / "HILLS").exists():
        return [folder / "HILLS"]
    return sorted(folder.glob("HILLS.[0-9]*"), key=lambda p: int(p.suffix[1:]))


def combine_hills(parts) -> Hills:
    """The hills of several walkers that built one bias (PLUMED's multiple walkers), in
    the order of deposition time."""
    parts = list(parts)
    first = parts[0]
    for h in parts[1:]:
        if h.cv_names != first.cv_names or abs(h.biasfactor - first.biasfactor) > 1e-9:
            raise ValueError(f"{h.source} and {first.source} do not belong to one bias (other "
                             "CVs or bias factor)")
    if len(parts) == 1:
        return first
    t = np.concatenate([h.time for h in parts])
    order = np.argsort(t, kind="stable")
    cat = (lambda name: np.concatenate([getattr(h, name) for h in parts])[order])
    return Hills(t[order], first.cv_names, cat("centers"), cat("sigmas"), cat("heights"),
                 first.biasfactor, first.kernel, ", ".join(h.source for h in parts))


# ----------------------------------------------------------------------------- kernels
def _kernel(dp2, kind):
    """PLUMED kernel of dp2 = r2 / 2."""
    if kind == "stretched-gaussian":
        shift = np.exp(-DP2_CUTOFF)
        return np.where(dp2 < DP2_CUTOFF, (np.exp(-dp2) - shift) / (1.0 - shift), 0.0)
    if kind == "truncated-gaussian":
        return np.where(dp2 < DP2_CUTOFF, np.exp(-dp2), 0.0)
    return np.exp(-dp2)


def hills_sum(hills: Hills, points: np.ndarray, chunk: int = 256) -> np.ndarray:
    """sum_i h_i K_i(s) at ``points`` (n_points, n_cv), with the stored heights."""
    pts = np.asarray(points, float).reshape(-1, hills.n_cv)
    out = np.zeros(len(pts))
    for s in range(0, len(hills.heights), chunk):
        c = hills.centers[s:s + chunk]
        w = hills.sigmas[s:s + chunk]
        dp2 = 0.5 * (((pts[:, None, :] - c[None]) / w[None]) ** 2).sum(-1)
        out += _kernel(dp2, hills.kernel) @ hills.heights[s:s + chunk]
    return out


@dataclass
class FES:
    """Free energy (kJ/mol, minimum 0) on a grid; ``axes`` has one array per CV."""

    axes: list
    free_energy: np.ndarray
    cv_names: list
    temperature: float
    meta: dict = field(default_factory=dict)

    def save_text(self, path: str | Path) -> Path:
        """Plain text, one row per grid point: CV values then F (kJ/mol)."""
        mesh = np.meshgrid(*self.axes, indexing="ij")
        cols = np.column_stack([m.ravel() for m in mesh] + [self.free_energy.ravel()])
        header = " ".join(self.cv_names) + " free_energy_kJ_per_mol"
        np.savetxt(path, cols, header=f"{header}\nT = {self.temperature} K; {self.meta}",
                   fmt="%.6f")
        return Path(path)

    def project(self, keep: int) -> "FES":
        """1D free energy of CV ``keep``: F(s) = -kT ln int exp(-F(s, s')/kT) ds'."""
        kT = KB_KJMOL * self.temperature
        other = tuple(k for k in range(len(self.axes)) if k != keep)
        fmin = self.free_energy.min()
        z = np.exp(-(self.free_energy - fmin) / kT)
        for k in sorted(other, reverse=True):
            z = np.trapezoid(z, self.axes[k], axis=k)
        f = -kT * np.log(np.maximum(z, 1e-300))
        return FES([self.axes[keep]], f - f.min(), [self.cv_names[keep]], self.temperature,
                   dict(self.meta, projected_from=self.cv_names))


def grid_axes(mins, maxs, bins):
    """One axis per CV with ``bins + 1`` points from min to max (PLUMED's convention)."""
    return [np.linspace(lo, hi, int(b) + 1) for lo, hi, b in zip(mins, maxs, bins)]


def fes_from_hills(hills: Hills | str | Path, mins=None, maxs=None, bins=None,
                   temperature: float = 300.0, t_max: float | None = None) -> FES:
    """F(s) = -sum_i h_i K_i(s) (see module doc), shifted to a zero minimum.

    Grid defaults: each CV's hill centres +- 3 sigma, 200 bins.
    """
    if not isinstance(hills, Hills):
        hills = read_hills(hills)
    if t_max is not None:
        hills = hills.upto(t_max)
    if len(hills.heights) == 0:
        raise ValueError("no hills deposited (yet) in the requested time range")
    d = hills.n_cv
    mins = list(hills.centers.min(0) - 3 * hills.sigmas.max(0)) if mins is None else list(mins)
    maxs = list(hills.centers.max(0) + 3 * hills.sigmas.max(0)) if maxs is None else list(maxs)
    bins = [200] * d if bins is None else list(bins)
    axes = grid_axes(mins, maxs, bins)
    mesh = np.meshgrid(*axes, indexing="ij")
    pts = np.column_stack([m.ravel() for m in mesh])
    f = -hills_sum(hills, pts).reshape(mesh[0].shape)
    return FES(axes, f - f.min(), hills.cv_names, temperature,
               {"biasfactor": hills.biasfactor, "n_hills": int(len(hills.heights)),
                "t_max": float(hills.time[-1]), "source": hills.source})


# ----------------------------------------------------------------------------- reweighting
def ct_series(hills: Hills, temperature: float, mins, maxs, bins) -> tuple:
    """c(t) at every hill deposition time (kJ/mol), on a grid (see module docstring)."""
    kT = KB_KJMOL * temperature
    gamma = hills.biasfactor
    if gamma <= 1:
        raise ValueError("c(t) reweighting needs well-tempered hills (bias factor > 1)")
    axes = grid_axes(mins, maxs, bins)
    mesh = np.meshgrid(*axes, indexing="ij")
    pts = np.column_stack([m.ravel() for m in mesh])
    bias = np.zeros(len(pts))
    ct = np.empty(len(hills.heights))
    factor = (gamma - 1.0) / gamma  # stored height -> deposited height
    for i in range(len(hills.heights)):
        dp2 = 0.5 * (((pts - hills.centers[i]) / hills.sigmas[i]) ** 2).sum(-1)
        bias += factor * hills.heights[i] * _kernel(dp2, hills.kernel)
        a = gamma / (gamma - 1.0) * bias / kT
        b = bias / ((gamma - 1.0) * kT)
        ct[i] = kT * (_logsumexp(a) - _logsumexp(b))
    return hills.time.copy(), ct


def _logsumexp(x):
    m = x.max()
    return m + np.log(np.exp(x - m).sum())


def reweighting_weights(colvar_time, bias, hills: Hills, temperature: float, mins, maxs, bins,
                        static_bias=None) -> np.ndarray:
    """Unnormalised log-weights ln w_t = (V(s_t, t) - c(t) + V_static)/kT of COLVAR frames.

    ``bias`` is the metadynamics bias column (kJ/mol) of COLVAR; c(t) is taken from the last
    hill deposited at or before each frame (0 before the first hill).
    """
    kT = KB_KJMOL * temperature
    t_h, ct = ct_series(hills, temperature, mins, maxs, bins)
    k = np.searchsorted(t_h, np.asarray(colvar_time), side="right") - 1
    c = np.where(k >= 0, ct[np.clip(k, 0, None)], 0.0)
    logw = (np.asarray(bias) - c) / kT
    if static_bias is not None:
        logw = logw + np.asarray(static_bias) / kT
    return logw


def reweighted_fes(values, logw, bins=100, range_=None, temperature: float = 300.0,
                   name: str = "cv") -> FES:
    """1D FES of any CV from reweighted samples: F = -kT ln (weighted histogram)."""
    kT = KB_KJMOL * temperature
    w = np.exp(logw - np.max(logw))
    hist, edges = np.histogram(values, bins=bins, range=range_, weights=w, density=True)
    centers = 0.5 * (edges[1:] + edges[:-1])
    with np.errstate(divide="ignore"):
        f = -kT * np.log(hist)
    f = f - np.min(f[np.isfinite(f)])
    return FES([centers], f, [name], temperature, {"estimator": "c(t) reweighting"})


def statistical_inefficiency(series) -> float:
    """Statistical inefficiency g >= 1 of a correlated time series (N/g independent samples),
    from pymbar's ``timeseries.statistical_inefficiency`` (integrated autocorrelation, Chodera
    et al., JCTC 3, 26 (2007)); 1 for a constant series."""
    x = np.asarray(series, float)
    if len(x) < 3 or np.ptp(x) == 0:
        return 1.0
    return float(max(1.0, _timeseries().statistical_inefficiency(x, mintime=3)))


def _timeseries():
    import contextlib
    import io
    import logging
    logging.getLogger("pymbar").setLevel(logging.ERROR)
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        from pymbar import timeseries
    return timeseries


def basin_delta_f(logw, in_a, in_b, temperature: float = 300.0,
                  names=("basin A", "basin B"), times=None, settled_after: float = 0.5) -> dict:
    """Delta F = F_B - F_A (kJ/mol) from reweighted, time-ordered frames, with its error.

    Delta F = -kT ln(sum_t w_t 1_B(t) / sum_t w_t 1_A(t)). The error comes from the
    linearised estimator u_t = w_t 1_B / <w 1_B> - w_t 1_A / <w 1_A> (delta method):
    sigma^2 = kT^2 g var(u) / N, with g the statistical inefficiency of u_t, so correlated
    and unevenly weighted frames count for what they are worth. Returns ``delta_f``,
    ``error`` (None with a ``note`` in words when a basin has no frames or the error cannot
    be estimated), ``frames_a``, ``frames_b``, ``statistical_inefficiency`` and
    ``effective_samples`` (N / g). ``names`` are the basins' names in the note.

    With the frames' ``times``, each basin must also have frames after the first
    ``settled_after`` of the run: reweighting is valid once the bias grows slowly, and a
    basin seen only while it was building (a walker that left its start and never came
    back) gives a Delta F that measures the run's history, not the free energy (a
    channel-01 walker that left O + OH in its first 2 ps of 50 gave +200 kJ/mol where the
    reaction energy is -88). Then ``delta_f`` is None with a ``note``, the all-frames
    value is kept as ``delta_f_all_frames`` and ``last_visit`` holds each basin's last
    frame time (the unit of ``times``).
    """
    kT = KB_KJMOL * temperature
    logw = np.asarray(logw, float)
    a, b = np.asarray(in_a, bool), np.asarray(in_b, bool)
    res = {"delta_f": None, "error": None, "frames_a": int(a.sum()), "frames_b": int(b.sum()),
           "statistical_inefficiency": None, "effective_samples": None, "note": None}
    empty = [name for name, m in zip(names, (a, b)) if not m.any()]
    if empty:
        res["note"] = f"no frames in {' or '.join(empty)}: Delta F cannot be estimated"
        return res
    w = np.exp(logw - logw[a | b].max())
    wa, wb = w * a, w * b
    ma, mb = wa.mean(), wb.mean()
    delta_f = float(-kT * (np.log(mb) - np.log(ma)))
    if times is not None:
        t = np.asarray(times, float)
        if t.shape != a.shape:
            raise ValueError(f"one time per frame is needed, got {t.shape} for {a.shape}")
        cut = t[0] + settled_after * (t[-1] - t[0])
        early = [(name, float(t[m].max())) for name, m in zip(names, (a, b))
                 if not (m & (t > cut)).any()]
        if early:
            res["delta_f_all_frames"] = delta_f
            res["last_visit"] = dict(early)
            seen = " and ".join(f"{name} last at {last:.3g}" for name, last in early)
            res["note"] = (f"{seen} of a run to {t[-1]:.3g}: a basin seen only in the first "
                           f"{100 * settled_after:.0f} % of the run, while the bias was "
                           f"building, gives no Delta F (all frames would give "
                           f"{delta_f:.0f} kJ/mol)")
            return res
    res["delta_f"] = delta_f
    u = wb / mb - wa / ma
    g = statistical_inefficiency(u)
    n = len(u)
    res["statistical_inefficiency"] = g
    res["effective_samples"] = n / g
    if n / g < 2:
        res["note"] = "fewer than 2 effective samples: no error bar"
        return res
    res["error"] = float(kT * np.sqrt(u.var(ddof=1) * g / n))
    return res


def convergence(logw, times, in_a, in_b, n_points=10, temperature=300.0) -> dict:
    """Delta F between two basins (and its error, see :func:`basin_delta_f`) from the frames
    up to increasing times. Lists hold None where a basin was still empty."""
    times = np.asarray(times)
    ends = np.linspace(times[0], times[-1], n_points + 1)[1:]
    out = {"time": [], "delta_f": [], "error": []}
    for t_end in ends:
        sel = times <= t_end
        r = basin_delta_f(logw[sel], in_a[sel], in_b[sel], temperature)
        out["time"].append(float(t_end))
        out["delta_f"].append(r["delta_f"])
        out["error"].append(r["error"])
    return out


# ----------------------------------------------------------------------------- PLUMED CLI
def plumed_sum_hills(hills_file, outfile, mins, maxs, bins, extra=()) -> Path:
    """Run PLUMED's own ``sum_hills`` (the bundled ``plumed`` executable) for cross-checks."""
    import shutil
    import subprocess
    import sys
    exe = shutil.which("plumed") or str(Path(sys.executable).parent / "plumed")
    cmd = [exe, "sum_hills", "--hills", str(hills_file), "--outfile", str(outfile),
           "--min", ",".join(map(str, mins)), "--max", ",".join(map(str, maxs)),
           "--bin", ",".join(map(str, bins)), "--mintozero", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not Path(outfile).exists():
        raise RuntimeError(f"plumed sum_hills failed: {proc.stderr[-1000:]}")
    return Path(outfile)
