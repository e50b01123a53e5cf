//! The experiment statistics against reference values computed with statsmodels and scipy by
//! `reference/experiment_stats.py` (committed with its output, `experiment_stats.json`): every
//! case must agree to 1e-6 (relative, for values above 1).

use leadrouter_models::experiment::stats::{self, Moments};
use leadrouter_models::experiment::{bayes, sequential};
use serde_json::Value;

fn reference() -> Value {
    serde_json::from_str(include_str!("reference/experiment_stats.json")).expect("reference JSON")
}

#[track_caller]
fn close(what: &str, got: f64, want: f64) {
    let tol = 1e-6 * want.abs().max(1.0);
    assert!((got - want).abs() <= tol, "{what}: got {got}, want {want}");
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("a number")
}

fn u(v: &Value) -> u64 {
    v.as_u64().expect("a count")
}

fn moments(v: &Value) -> Moments {
    Moments { mean: f(&v[0]), sd: f(&v[1]), n: u(&v[2]) }
}

#[test]
fn wilson_matches_statsmodels() {
    for c in reference()["wilson"].as_array().unwrap() {
        let (lo, hi) = stats::wilson(u(&c["count"]), u(&c["nobs"]), f(&c["alpha"]));
        close(&format!("wilson low {c}"), lo, f(&c["low"]));
        close(&format!("wilson high {c}"), hi, f(&c["high"]));
    }
}

#[test]
fn the_z_test_matches_proportions_ztest() {
    for c in reference()["ztest"].as_array().unwrap() {
        let (t, k) = (&c["treatment"], &c["control"]);
        let x = stats::two_proportion_z(u(&t[0]), u(&t[1]), u(&k[0]), u(&k[1])).unwrap();
        close(&format!("z {c}"), x.statistic, f(&c["z"]));
        close(&format!("p {c}"), x.p, f(&c["p"]));
    }
}

#[test]
fn welch_matches_scipy() {
    for c in reference()["welch"].as_array().unwrap() {
        let x = stats::welch(moments(&c["treatment"]), moments(&c["control"])).unwrap();
        close(&format!("t {c}"), x.statistic, f(&c["t"]));
        close(&format!("p {c}"), x.p, f(&c["p"]));
        close(&format!("df {c}"), x.df, f(&c["df"]));
    }
}

#[test]
fn power_and_sample_size_match_normal_ind_power() {
    for c in reference()["power"].as_array().unwrap() {
        let h = stats::cohen_h(f(&c["p1"]), f(&c["p2"]));
        close(&format!("h {c}"), h, f(&c["h"]));
        close(&format!("power {c}"), stats::power(h, f(&c["n"]), f(&c["alpha"])), f(&c["power"]));
        let n = stats::sample_size(h, f(&c["alpha"]), 0.8).unwrap();
        close(&format!("n {c}"), n, f(&c["nPerArmFor80"]));
    }
}

#[test]
fn srm_matches_chisquare() {
    for c in reference()["srm"].as_array().unwrap() {
        let obs: Vec<u64> = c["observed"].as_array().unwrap().iter().map(u).collect();
        let planned: Vec<f64> = c["planned"].as_array().unwrap().iter().map(f).collect();
        let (chi, p) = stats::chi_square_gof(&obs, &planned).unwrap();
        close(&format!("chi2 {c}"), chi, f(&c["chi2"]));
        close(&format!("p {c}"), p, f(&c["p"]));
    }
}

#[test]
fn adjustments_match_multipletests() {
    for c in reference()["adjust"].as_array().unwrap() {
        let p: Vec<f64> = c["p"].as_array().unwrap().iter().map(f).collect();
        for (got, want) in stats::holm(&p).iter().zip(c["holm"].as_array().unwrap()) {
            close(&format!("holm {c}"), *got, f(want));
        }
        for (got, want) in stats::benjamini_hochberg(&p).iter().zip(c["bh"].as_array().unwrap()) {
            close(&format!("bh {c}"), *got, f(want));
        }
    }
}

#[test]
fn the_delta_method_matches_its_formula() {
    for c in reference()["relative"].as_array().unwrap() {
        let (rel, lo, hi) = stats::relative(moments(&c["treatment"]), moments(&c["control"]), f(&c["alpha"])).unwrap();
        close(&format!("relative {c}"), rel, f(&c["relative"]));
        close(&format!("low {c}"), lo, f(&c["low"]));
        close(&format!("high {c}"), hi, f(&c["high"]));
    }
}

#[test]
fn confidence_sequences_match_their_formula() {
    for c in reference()["sequential"].as_array().unwrap() {
        close(&format!("rho {c}"), sequential::rho(f(&c["alpha"]), f(&c["tuning"])), f(&c["rho"]));
        let h = sequential::half_width(f(&c["s2"]), f(&c["n"]), f(&c["tuning"]), f(&c["alpha"]));
        close(&format!("half width {c}"), h, f(&c["halfWidth"]));
    }
}

#[test]
fn the_bayesian_summary_matches_numerical_integration() {
    for c in reference()["bayes"].as_array().unwrap() {
        close(&format!("chance {c}"), bayes::chance_to_beat(f(&c["mean"]), f(&c["se"])), f(&c["chanceToBeat"]));
        close(&format!("loss {c}"), bayes::expected_loss(f(&c["mean"]), f(&c["se"])), f(&c["expectedLoss"]));
    }
}

#[test]
fn probabilities_of_being_best_match_numerical_integration() {
    for c in reference()["pBest"].as_array().unwrap() {
        let arms: Vec<(u64, u64)> = c["arms"].as_array().unwrap().iter().map(|a| (u(&a[0]), u(&a[1]))).collect();
        for (got, want) in bayes::p_best(&arms).iter().zip(c["pBest"].as_array().unwrap()) {
            close(&format!("p best {c}"), *got, f(want));
        }
    }
}
