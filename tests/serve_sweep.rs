//! `scout serve` and the sweep's plan: what a sweep asked through the
//! server measures is what the command line's next plan estimates from.

use serde_json::json;

use crate::serve::Serve;
use crate::util::data;

/// A sweep asked through the server records its rate in the cache
/// folder, where the command line's next plan takes its estimate from.
#[test]
fn a_sweep_through_the_server_records_the_rate_the_cli_estimates_from() {
    let dir = tempfile::tempdir().unwrap();
    let s = Serve::start(dir.path(), &["--context", "700"]);
    s.create_needle();
    let question = "What is the vault unseal phrase?";
    let (status, r) = s.json(
        "POST",
        "/v1/corpora/needle/ask",
        Some(&json!({"question": question, "max_tokens": 32})),
    );
    assert_eq!(status, 200, "{r}");
    assert!(r["plan"]["windows"].as_u64().unwrap() > 1, "{r:#}");
    assert!(r["plan"].get("estimate_s").is_none(), "nothing measured yet: {r:#}");
    let out = crate::util::ask(
        dir.path(),
        &data("needle"),
        question,
        &["--context", "700", "--max-tokens", "32", "--dry-run"],
    );
    let plan = &crate::util::json(&out)["plan"];
    assert!(plan["estimate_s"].as_f64().unwrap() > 0.0, "{plan:#}");
}
