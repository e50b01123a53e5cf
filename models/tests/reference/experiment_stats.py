"""Reference values for the experiment statistics in `leadrouter_models::experiment`.

Run by hand, not by CI (it needs statsmodels and scipy):

    python3 -m venv /tmp/statsvenv && /tmp/statsvenv/bin/pip install statsmodels scipy
    /tmp/statsvenv/bin/python models/tests/reference/experiment_stats.py \
        > models/tests/reference/experiment_stats.json

`models/tests/reference_stats.rs` compares every case to 1e-6.
"""
import json
import math

import numpy as np
import scipy
import statsmodels
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_confint, proportion_effectsize, proportions_ztest

out = {"generatedWith": {"statsmodels": statsmodels.__version__, "scipy": scipy.__version__}}

# Wilson score interval.
out["wilson"] = [
    {"count": c, "nobs": n, "alpha": a, "low": lo, "high": hi}
    for c, n, a in [(0, 10, 0.05), (5, 10, 0.05), (120, 1000, 0.05), (37, 412, 0.01), (999, 1000, 0.1), (3, 50000, 0.05)]
    for lo, hi in [proportion_confint(c, n, alpha=a, method="wilson")]
]

# Two-proportion z-test, pooled variance, two-sided: treatment (first) minus control.
ztests = []
for ct, nt, cc, nc in [(130, 1000, 100, 1000), (45, 500, 52, 510), (2010, 20000, 1950, 20100), (12, 90, 3, 85)]:
    z, p = proportions_ztest([ct, cc], [nt, nc], alternative="two-sided")
    ztests.append({"treatment": [ct, nt], "control": [cc, nc], "z": float(z), "p": float(p)})
out["ztest"] = ztests

# Welch's t-test from summary statistics: treatment minus control.
welch = []
for mt, st, nt, mc, sc, nc in [(52.1, 140.3, 900, 44.0, 120.9, 910), (10.0, 2.0, 30, 9.0, 4.0, 25), (0.5, 1.5, 5000, 0.52, 1.4, 4900)]:
    t, p = stats.ttest_ind_from_stats(mt, st, nt, mc, sc, nc, equal_var=False)
    vt, vc = st**2 / nt, sc**2 / nc
    df = (vt + vc) ** 2 / (vt**2 / (nt - 1) + vc**2 / (nc - 1))
    welch.append({"treatment": [mt, st, nt], "control": [mc, sc, nc], "t": float(t), "p": float(p), "df": float(df)})
out["welch"] = welch

# Cohen's h, power and sample size per arm (NormalIndPower, equal arms, two-sided).
power = []
for p1, p2, n, alpha in [(0.12, 0.10, 2000, 0.05), (0.05, 0.04, 10000, 0.05), (0.30, 0.25, 500, 0.01)]:
    h = proportion_effectsize(p1, p2)
    pw = NormalIndPower().power(effect_size=h, nobs1=n, alpha=alpha, ratio=1.0, alternative="two-sided")
    nn = NormalIndPower().solve_power(effect_size=h, nobs1=None, alpha=alpha, power=0.8, ratio=1.0, alternative="two-sided")
    power.append({"p1": p1, "p2": p2, "n": n, "alpha": alpha, "h": float(h), "power": float(pw), "nPerArmFor80": float(nn)})
out["power"] = power

# Chi-square goodness of fit (sample ratio mismatch).
srm = []
for obs, planned in [([5000, 5100], [0.5, 0.5]), ([4800, 5200], [0.5, 0.5]), ([3300, 3350, 3290], [1 / 3, 1 / 3, 1 / 3]), ([900, 100], [0.85, 0.15])]:
    total = sum(obs)
    chi, p = stats.chisquare(obs, [total * w for w in planned])
    srm.append({"observed": obs, "planned": planned, "chi2": float(chi), "p": float(p)})
out["srm"] = srm

# Holm and Benjamini-Hochberg adjusted p-values.
out["adjust"] = [
    {"p": ps, "holm": list(multipletests(ps, method="holm")[1]), "bh": list(multipletests(ps, method="fdr_bh")[1])}
    for ps in [[0.01, 0.04, 0.03, 0.005], [0.2, 0.5, 0.001], [0.049]]
]

# Relative difference (treatment / control - 1) with the delta method:
# var(rel) = var_t / mean_c^2 + mean_t^2 * var_c / mean_c^4, var_x = sd_x^2 / n_x.
delta = []
for mt, st, nt, mc, sc, nc, alpha in [(0.13, math.sqrt(0.13 * 0.87), 1000, 0.10, math.sqrt(0.09), 1000, 0.05), (52.1, 140.3, 900, 44.0, 120.9, 910, 0.05)]:
    vt, vc = st**2 / nt, sc**2 / nc
    rel = mt / mc - 1
    var = vt / mc**2 + mt**2 * vc / mc**4
    z = stats.norm.isf(alpha / 2)
    delta.append({"treatment": [mt, st, nt], "control": [mc, sc, nc], "alpha": alpha, "relative": rel, "low": rel - z * math.sqrt(var), "high": rel + z * math.sqrt(var)})
out["relative"] = delta

# Confidence sequences (Howard et al. 2021, normal mixture; the two-sided form of
# Waudby-Smith et al. 2023 eq. 161 that GrowthBook uses): rho from the tuning parameter N,
# half-width sqrt(s2) * sqrt(2 (n rho^2 + 1) ln(sqrt(n rho^2 + 1) / alpha) / (n rho)^2),
# s2 the per-observation variance of the difference, n both arms' size.
seq = []
for s2, n, tuning, alpha in [(0.2, 2000, 5000, 0.05), (0.1, 100, 5000, 0.05), (4.0, 50000, 1000, 0.01)]:
    rho = math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning)
    half = math.sqrt(s2) * math.sqrt(2 * (n * rho**2 + 1) * math.log(math.sqrt(n * rho**2 + 1) / alpha) / (n * rho) ** 2)
    seq.append({"s2": s2, "n": n, "tuning": tuning, "alpha": alpha, "rho": rho, "halfWidth": half})
out["sequential"] = seq

# Bayesian summary, normal approximation of the difference d ~ N(mean, se^2) (flat prior):
# chance to beat control P(d > 0) and expected loss E[max(0, -d)], by numerical integration.
bayes = []
for mean, se in [(0.02, 0.015), (-0.01, 0.02), (3.5, 1.0)]:
    chance = stats.norm.sf(0, loc=mean, scale=se)
    loss = scipy.integrate.quad(lambda x: max(0.0, -x) * stats.norm.pdf(x, mean, se), mean - 12 * se, mean + 12 * se, points=[0.0], limit=200)[0]
    bayes.append({"mean": mean, "se": se, "chanceToBeat": float(chance), "expectedLoss": float(loss)})
out["bayes"] = bayes

# Probability that each arm's conversion rate is the highest, Beta(1 + c, 1 + n - c) posteriors
# (what Thompson sampling allocates by), by numerical integration.
best = []
for arms in [[(100, 1000), (120, 1000)], [(10, 100), (12, 100), (8, 100)], [(50, 400), (50, 400)]]:
    dists = [stats.beta(1 + c, 1 + n - c) for c, n in arms]
    probs = []
    for i, d in enumerate(dists):
        def f(x, i=i, d=d):
            v = d.pdf(x)
            for j, e in enumerate(dists):
                if j != i:
                    v *= e.cdf(x)
            return v
        probs.append(scipy.integrate.quad(f, 0, 1, limit=500, epsabs=1e-12)[0])
    best.append({"arms": arms, "pBest": probs})
out["pBest"] = best

print(json.dumps(out, indent=1))
