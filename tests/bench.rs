//! `scout bench needle` end to end with the real default model, on a tiny
//! grid: one length that fits one window, two depths.

use crate::util::{json, model, scout, text};

/// A copy of some of the repository's own docs: real prose, a few thousand
/// tokens.
fn docs_copy(dir: &std::path::Path) -> std::path::PathBuf {
    let root = dir.join("docs");
    std::fs::create_dir_all(&root).unwrap();
    for name in ["pack.md", "plan.md", "config.md"] {
        std::fs::copy(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs").join(name),
            root.join(name),
        )
        .unwrap();
    }
    root
}

#[test]
fn a_tiny_needle_grid_plants_where_asked_and_adds_up() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = docs_copy(dir.path());
    let before: Vec<u8> = std::fs::read(source.join("pack.md")).unwrap();
    let out = scout(cache.path())
        .args([
            "bench",
            "needle",
            "--json",
            "--threads",
            "1",
            "--lengths",
            "2k",
            "--depths",
            "0,100",
        ])
        .args(["--needles", "1", "--model"])
        .arg(model())
        .arg(&source)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let r = json(&out);
    let hay = &r["haystacks"][0];
    assert_eq!(hay["length"], 2000);
    let tokens = hay["tokens"].as_u64().unwrap();
    assert!((1800..=2000).contains(&tokens), "haystack of {tokens} tokens");

    let trials = r["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 2, "{r:#}");
    let cells = r["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    for (cell, depth) in cells.iter().zip([0, 100]) {
        assert_eq!(
            (cell["depth"].as_u64(), cell["trials"].as_u64()),
            (Some(depth), Some(1))
        );
    }
    for key in ["found", "cited"] {
        let in_cells: u64 = cells.iter().map(|c| c[key].as_u64().unwrap()).sum();
        let in_trials = trials.iter().filter(|t| t[key] == true).count() as u64;
        assert_eq!(in_cells, in_trials, "{key}");
    }
    for t in trials {
        // One needle per cell: the same needle at both depths.
        assert_eq!(t["needle"], trials[0]["needle"]);
        assert!(t["needle"].as_str().unwrap().contains(t["value"].as_str().unwrap()));
        let asked = t["depth"].as_f64().unwrap() / 100.0;
        let measured = t["depth_measured"].as_f64().unwrap();
        assert!((asked - measured).abs() < 0.05, "asked {asked}, planted at {measured}");
        assert!(t["path"].as_str().unwrap().starts_with(source.to_str().unwrap()));
        assert_eq!(t["windows"], 1);
        // The answer's score is what the answer says.
        let found = t["answer"].as_str().unwrap().contains(t["value"].as_str().unwrap());
        assert_eq!(t["found"], found, "{t:#}");
    }
    // At depth 0 the needle opens the first document; at 100 it ends the last.
    assert_eq!(trials[0]["line"], 1);
    assert!(trials[1]["line"].as_u64().unwrap() > 10, "{:#}", trials[1]);
    assert_eq!(
        std::fs::read(source.join("pack.md")).unwrap(),
        before,
        "the sources are left alone"
    );
}

#[test]
fn a_haystack_longer_than_the_corpus_is_a_clear_error() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = docs_copy(dir.path());
    let out = scout(cache.path())
        .args(["bench", "needle", "-q", "--threads", "1", "--lengths", "1m", "--model"])
        .arg(model())
        .arg(&source)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("too few for a 1000000-token haystack"), "{err}");
}

/// The bundled receipts against their truth: every true field is scored,
/// and the counts agree with the per-field results.
#[test]
fn extraction_is_scored_field_by_field_against_the_truth() {
    let cache = tempfile::tempdir().unwrap();
    let receipts = crate::util::data("receipts");
    let out = scout(cache.path())
        .args(["bench", "extract", "--json", "-q", "--threads", "1", "--truth"])
        .arg(receipts.join("truth.jsonl"))
        .arg("--model")
        .arg(model())
        .arg(receipts.join("receipt1.png"))
        .arg(receipts.join("receipt2.png"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let r = json(&out);
    assert_eq!((r["documents"].as_u64(), r["of"].as_u64()), (Some(2), Some(8)), "{r:#}");
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 8);
    for key in ["exact", "loose"] {
        let n = results.iter().filter(|x| x[key] == true).count() as u64;
        assert_eq!(r[key].as_u64(), Some(n), "{key}");
    }
    for x in results {
        // Exact implies loose; the flags say what the values say.
        assert!(x["loose"] == true || x["exact"] == false, "{x}");
        assert_eq!(x["exact"], x["got"] == x["truth"] && x["got"] != "", "{x}");
    }
    let fields: Vec<&str> = r["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["company", "date", "address", "total"]);
}
