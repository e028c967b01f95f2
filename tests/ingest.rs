//! `scout ingest`: summary numbers, JSON shape, incremental re-ingest,
//! exit codes.

use crate::util::{data, json, model, scout, text};

#[test]
fn summary_counts_every_file_and_every_skip() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.db");
    let out = scout(dir.path())
        .args(["ingest", "--no-tokens", "--json", "--corpus"])
        .arg(&corpus)
        .arg(data("mixed"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = json(&out);
    assert_eq!(s["documents"], 5);
    assert_eq!(
        s["by_kind"],
        serde_json::json!({"code": 1, "image": 1, "pdf": 1, "text": 2})
    );
    // lib.rs, guide.md, latin1.txt one segment each; the PDF one per page;
    // the image one.
    assert_eq!(s["segments"], 6);
    assert_eq!(s["skipped"], serde_json::json!({"binary": 1, "empty": 1}));
    assert_eq!(s["replaced_chars"], 2, "latin1.txt has two invalid UTF-8 bytes");
    assert_eq!(s["errors"], 0);
    // diagram.png is 4 x 3 px: one tile, 147 tokens.
    assert_eq!(s["llama4_image_tokens"], 147);
    assert_eq!(s["tokens"], serde_json::Value::Null, "--no-tokens counts nothing");
    let skipped: Vec<&str> = s["skips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["path"].as_str().unwrap())
        .collect();
    assert!(skipped.iter().any(|p| p.ends_with("mixed/binary.txt")), "{skipped:?}");
    assert!(
        !text(&out.stdout).contains("debug.log"),
        ".gitignore'd files are not read"
    );
}

#[test]
fn text_summary_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.db");
    let out = scout(dir.path())
        .args(["ingest", "--no-tokens", "--corpus"])
        .arg(&corpus)
        .arg("tests/data/mixed")
        .output()
        .unwrap();
    // The git line names this checkout and its commit (tested on its own).
    let shown: String = text(&out.stdout)
        .replace(&corpus.display().to_string(), "[CORPUS]")
        .lines()
        .filter(|l| !l.starts_with("git: "))
        .map(|l| format!("{l}\n"))
        .collect();
    insta::assert_snapshot!(shown);
}

#[test]
fn reingest_reuses_unchanged_files_and_sees_edits_and_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("a.md"), "alpha\n").unwrap();
    std::fs::write(tree.join("b.md"), "beta\n").unwrap();
    crate::util::backdate(&tree);
    let corpus = dir.path().join("c.db");
    let run = || {
        let out = crate::util::ingest(dir.path(), &corpus, &tree, &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        json(&out)
    };
    let first = run();
    assert_eq!(
        (first["added"].as_u64(), first["documents"].as_u64()),
        (Some(2), Some(2))
    );
    std::fs::write(tree.join("a.md"), "alpha, edited\n").unwrap();
    std::fs::remove_file(tree.join("b.md")).unwrap();
    std::fs::write(tree.join("c.md"), "gamma\n").unwrap();
    crate::util::backdate(&tree);
    let second = run();
    assert_eq!(
        [
            &second["added"],
            &second["changed"],
            &second["reused"],
            &second["removed"],
            &second["documents"]
        ],
        [1, 1, 0, 1, 2]
    );
    // Nothing touched: nothing is read again.
    let third = run();
    assert_eq!(
        [
            &third["reused"],
            &third["added"],
            &third["changed"],
            &third["documents"]
        ],
        [2, 0, 0, 2]
    );
}

#[test]
fn a_reingest_takes_the_last_listing_until_a_folder_changes() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("src")).unwrap();
    std::fs::write(tree.join("a.md"), "alpha\n").unwrap();
    std::fs::write(tree.join("src/b.rs"), "fn b() {}\n").unwrap();
    crate::util::backdate(&tree);
    // A folder changed in the last 2 seconds is not trusted, and its
    // change time cannot be set back.
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    let corpus = dir.path().join("c.db");
    let run = |extra: &[&str]| {
        let out = crate::util::ingest(dir.path(), &corpus, &tree, extra);
        assert!(out.status.success(), "{}", text(&out.stderr));
        json(&out)
    };
    assert_eq!(run(&[])["listing"], "recorded");
    let second = run(&[]);
    assert_eq!(
        [&second["listing"], &second["reused"], &second["documents"]],
        [&serde_json::json!("used"), &serde_json::json!(2), &serde_json::json!(2)]
    );
    let shown = scout(dir.path())
        .args(["ingest", "--no-tokens", "--corpus"])
        .arg(&corpus)
        .arg(&tree)
        .output()
        .unwrap();
    assert!(
        text(&shown.stdout).contains("its listing was used (--rescan walks anyway)"),
        "{}",
        text(&shown.stdout)
    );
    assert_eq!(run(&["--rescan"])["listing"], "recorded");
    // A new file changes its folder: the tree is walked, and the file found
    // (no listing is kept of a folder that changed just now).
    std::fs::write(tree.join("src/c.rs"), "fn c() {}\n").unwrap();
    crate::util::backdate(&tree);
    let third = run(&[]);
    assert_eq!(
        [&third["listing"], &third["added"], &third["documents"]],
        [
            &serde_json::json!("not_recorded"),
            &serde_json::json!(1),
            &serde_json::json!(3)
        ]
    );
}

#[test]
fn a_listed_reingest_keeps_other_sources_and_knows_what_the_last_run_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, other) = (dir.path().join("tree"), dir.path().join("other"));
    std::fs::create_dir_all(tree.join("src")).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(tree.join("a.md"), "alpha\n").unwrap();
    std::fs::write(tree.join("src/b.rs"), "fn b() {}\n").unwrap();
    std::fs::write(other.join("o.md"), "other\n").unwrap();
    crate::util::backdate(dir.path());
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    let corpus = dir.path().join("c.db");
    let run = |source: &std::path::Path| {
        let out = crate::util::ingest(dir.path(), &corpus, source, &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let s = json(&out);
        let n = |k: &str| s[k].as_u64().unwrap();
        (
            s["listing"].as_str().unwrap().to_owned(),
            [n("reused"), n("changed"), n("unchanged"), n("removed"), n("documents")],
        )
    };
    run(&other);
    assert_eq!(run(&tree).0, "recorded");
    // The corpus holds another source's document too: the listed files
    // found unchanged are seen, not removed, and the other one is kept.
    assert_eq!(run(&tree), ("used".into(), [2, 0, 0, 0, 3]));
    // An edit in place: read again, and the listing (not kept again) is
    // told by the corpus's log of what it now holds.
    std::fs::write(tree.join("a.md"), "alpha, edited\n").unwrap();
    crate::util::backdate(&tree);
    assert_eq!(run(&tree), ("used".into(), [1, 1, 0, 0, 3]));
    assert_eq!(run(&tree), ("used".into(), [2, 0, 0, 0, 3]));
}

#[test]
fn a_broken_pdf_is_a_typed_error_and_exit_2_but_the_rest_is_ingested() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.db");
    let out = scout(dir.path())
        .args(["ingest", "--no-tokens", "--json", "--corpus"])
        .arg(&corpus)
        .arg(data("broken"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let s = json(&out);
    assert_eq!(s["documents"], 1, "ok.txt is still ingested");
    assert_eq!(s["skipped"]["pdf_error"], 1);
    assert_eq!(s["errors"], 1);
}

#[test]
fn a_missing_path_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = scout(dir.path())
        .args(["ingest", "--no-tokens", "--corpus"])
        .arg(dir.path().join("c.db"))
        .arg("no/such/folder")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no/such/folder: no such file or folder"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn token_counts_are_exact_and_stable_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.db");
    let run = || {
        let out = scout(dir.path())
            .args(["ingest", "--json", "--model"])
            .arg(model())
            .arg("--corpus")
            .arg(&corpus)
            .arg(data("needle"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        json(&out)["tokens"].as_u64().expect("tokens counted")
    };
    let first = run();
    // The needle corpus is about 2.3 KB of English and Python: with
    // boundaries and line markers that is several hundred tokens.
    assert!((400..1500).contains(&first), "{first}");
    assert_eq!(run(), first, "the cached count equals the fresh one");
}

#[test]
fn secrets_are_redacted_listed_and_kept_out_of_the_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.db");
    let run = |extra: &[&str]| {
        let out = scout(dir.path())
            .args(["ingest", "--no-tokens", "--json", "--corpus"])
            .arg(&corpus)
            .args(extra)
            .arg(data("secrets"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        json(&out)
    };
    let s = run(&[]);
    let found: Vec<(String, u64, String)> = s["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let path = f["path"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
            (
                path,
                f["line"].as_u64().unwrap(),
                f["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, u64, String)> = [
        ("id_rsa.pem", 1, "private_key"),
        ("settings.py", 3, "aws_access_key_id"),
        ("settings.py", 4, "url_password"),
        ("settings.py", 5, "stripe_secret_key"),
        ("settings.py", 6, "assigned_secret"),
    ]
    .iter()
    .map(|(p, l, k)| ((*p).to_owned(), *l, (*k).to_owned()))
    .collect();
    assert_eq!(found, expected);
    assert_eq!(s["secrets_in_corpus"], 5);
    let stored = |path_end: &str| -> String {
        let c = scout::corpus::Corpus::open(&corpus).unwrap();
        let docs = c.documents().unwrap();
        let d = docs.iter().find(|d| d.path.ends_with(path_end)).unwrap();
        d.segments.iter().map(|s| s.text.as_str()).collect()
    };
    let settings = stored("settings.py");
    for secret in [
        "AKIAQ3EGRL7WF2XSJN4D",
        "Wd8#kq2Lx9",
        "sk_live_4eC39",
        "kX9f2Lq8Vz3Rm7Tp1Wc5",
        "MIIEow",
    ] {
        assert!(
            !settings.contains(secret) && !stored("id_rsa.pem").contains(secret),
            "{secret} leaked"
        );
    }
    assert_eq!(settings.lines().count(), 11, "line numbers are kept");
    assert!(
        settings.contains("password = load_password_from_vault()"),
        "code is not a secret"
    );
    // --keep-secrets stores them, and re-reads every file to do so.
    let kept = run(&["--keep-secrets"]);
    assert_eq!(kept["reused"], 0);
    assert!(kept["secrets"].as_array().unwrap().is_empty());
    assert!(stored("settings.py").contains("AKIAQ3EGRL7WF2XSJN4D"));
}

#[test]
fn pdf_bookmarks_become_sections_and_encrypted_pdfs_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.db");
    let out = scout(dir.path())
        .args(["ingest", "--no-tokens", "--json", "--corpus"])
        .arg(&corpus)
        .arg(data("pdfs"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "the encrypted PDF is an error");
    let s = json(&out);
    assert_eq!(s["skipped"]["pdf_encrypted"], 1);
    let skip = &s["skips"][0];
    assert!(skip["detail"].as_str().unwrap().contains("needs a password"), "{skip}");
    let c = scout::corpus::Corpus::open(&corpus).unwrap();
    let docs = c.documents().unwrap();
    let pdf = &docs[0];
    assert_eq!(pdf.title.as_deref(), Some("scout example"));
    let sections: Vec<(&str, u32, u32)> = pdf
        .symbols
        .iter()
        .map(|s| (s.name.as_str(), s.start_line, s.end_line))
        .collect();
    assert_eq!(
        sections,
        vec![("Introduction", 1, 1), ("Findings", 2, 2), ("Appendix", 3, 3)]
    );
}

#[test]
fn encrypted_pdfs_open_with_the_empty_password_or_the_one_in_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let run = |password: Option<&str>| {
        let corpus = dir.path().join(format!("c-{}.db", password.unwrap_or("none")));
        let mut cmd = scout(dir.path());
        cmd.args(["ingest", "--no-tokens", "--json", "--corpus"])
            .arg(&corpus)
            .arg(data("pdf-encryption"))
            .env_remove(scout::ingest::pdf::PASSWORD_VAR);
        if let Some(p) = password {
            cmd.env(scout::ingest::pdf::PASSWORD_VAR, p);
        }
        cmd.output().unwrap()
    };
    // RC4 40/128 and AES 128/256 with an empty user password: read.
    let out = run(None);
    assert_eq!(out.status.code(), Some(2), "one file needs a password");
    let s = json(&out);
    assert_eq!(s["by_kind"]["pdf"], 4, "{s:#}");
    assert_eq!(s["skipped"]["pdf_encrypted"], 1, "{s:#}");
    assert!(
        s["skips"][0]["detail"].as_str().unwrap().contains("SCOUT_PDF_PASSWORD"),
        "{s:#}"
    );
    let wrong = json(&run(Some("guess")));
    assert!(
        wrong["skips"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("does not open it"),
        "{wrong:#}"
    );
    let right = run(Some("s3cret"));
    assert_eq!(right.status.code(), Some(0), "{}", text(&right.stderr));
    assert_eq!(json(&right)["by_kind"]["pdf"], 5);
}

#[test]
fn without_tesseract_images_are_kept_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.db");
    let empty_path = dir.path().join("bin");
    std::fs::create_dir(&empty_path).unwrap();
    let out = scout(dir.path())
        .args(["ingest", "--no-tokens", "--json", "--corpus"])
        .arg(&corpus)
        .arg(data("scans"))
        .env("PATH", &empty_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = json(&out);
    // The PNG scan and the scanned PDF are both kept; the image and the
    // PDF's two pages are each counted as unread.
    assert_eq!(s["documents"], 2);
    assert_eq!(s["ocr"]["ocr_unavailable"], 3, "{s:#}");
}

#[test]
fn scanned_pdf_pages_and_images_are_read_by_ocr() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.db");
    let out = scout(dir.path())
        .args(["ingest", "--no-tokens", "--json", "--corpus"])
        .arg(&corpus)
        .arg(data("scans"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = json(&out);
    // The PNG scan, and both pages of the scanned PDF (one JPEG, one Flate).
    assert_eq!(s["ocr"]["ok"], 3, "{s:#}");
    let c = scout::corpus::Corpus::open(&corpus).unwrap();
    let docs = c.documents().unwrap();
    let pdf = docs.iter().find(|d| d.path.ends_with("scanned-handbook.pdf")).unwrap();
    let page2: String = pdf
        .segments
        .iter()
        .filter(|s| s.anchor.page() == Some(2))
        .map(|s| s.text.as_str())
        .collect();
    assert!(page2.contains("Priya Raman"), "{page2}");
    assert!(pdf
        .segments
        .iter()
        .all(|s| matches!(s.anchor, scout::anchor::Anchor::Region { .. })));
}

#[test]
fn the_map_page_holds_every_document_and_skip() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.db");
    let map = dir.path().join("map.html");
    let out = scout(dir.path())
        .args(["ingest", "--no-tokens", "--corpus"])
        .arg(&corpus)
        .arg("--map")
        .arg(&map)
        .arg(data("mixed"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let html = std::fs::read_to_string(&map).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "self-contained: nothing fetched"
    );
    for name in [
        "src/lib.rs",
        "docs/report.pdf",
        "docs/diagram.png",
        "binary.txt",
        "empty.txt",
    ] {
        assert!(html.contains(name), "{name} missing from the map");
    }
    assert!(
        html.contains("\"unit\":\"bytes\""),
        "without token counts, sizes are bytes"
    );
}

#[test]
fn cached_token_totals_match_a_fresh_count_after_an_edit() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("a.py"), "def a():\n    return 1\n").unwrap();
    std::fs::write(tree.join("b.md"), "# B\nsome words here\n").unwrap();
    let tokens = |corpus: &std::path::Path, extra: &[&str]| {
        let out = scout(dir.path())
            .args(["ingest", "--json", "--model"])
            .arg(model())
            .args(extra)
            .arg("--corpus")
            .arg(corpus)
            .arg(&tree)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        json(&out)["tokens"].as_u64().unwrap()
    };
    let kept = dir.path().join("kept.db");
    let before = tokens(&kept, &[]);
    std::fs::write(tree.join("a.py"), "def a():\n    return 1 + 2 + 3 + 4 + 5\n").unwrap();
    let after = tokens(&kept, &[]);
    assert!(after > before, "the edit added tokens: {before} -> {after}");
    // Ground truth with the same salt (a new corpus would draw another, and
    // its boundary lines would tokenize differently): a copy of this corpus
    // where every document is rewritten and counted afresh. Switching
    // redaction does that; there are no secrets here, so the text is equal.
    let copy = dir.path().join("copy.db");
    std::fs::copy(&kept, &copy).unwrap();
    assert_eq!(
        after,
        tokens(&copy, &["--keep-secrets"]),
        "the cached total equals a fresh count"
    );
}

/// `jpeg` with an EXIF APP1 segment saying how to turn it upright
/// (TIFF orientation tag 0x0112), placed right after the start marker.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01".to_vec();
    tiff.extend_from_slice(&0x0112u16.to_be_bytes());
    tiff.extend_from_slice(&3u16.to_be_bytes());
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&(app1.len() as u16 + 2).to_be_bytes());
    out.extend(app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_turns_an_image_upright_for_its_size_and_ocr() {
    let page = image::open(data("scans/handbook-page2.png")).unwrap();
    // Stored turned a quarter to the left; EXIF 6 says "turn right to view".
    let mut jpeg = Vec::new();
    page.rotate270()
        .write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scans = dir.path().join("scans");
    std::fs::create_dir(&scans).unwrap();
    std::fs::write(scans.join("sideways.jpg"), with_exif_orientation(&jpeg, 6)).unwrap();
    let corpus = dir.path().join("c.db");
    let out = scout(dir.path())
        .args(["ingest", "--no-tokens", "--json", "--corpus"])
        .arg(&corpus)
        .arg(&scans)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(json(&out)["ocr"]["ok"], 1, "{}", text(&out.stdout));
    let c = scout::corpus::Corpus::open(&corpus).unwrap();
    let doc = &c.documents().unwrap()[0];
    let info = doc.image.unwrap();
    assert_eq!(
        (info.width, info.height),
        (850, 1100),
        "the upright size, not the stored one"
    );
    let words: String = doc.segments.iter().map(|s| s.text.as_str()).collect();
    assert!(words.contains("Priya Raman"), "{words}");
}

#[test]
fn a_corrupt_image_is_a_typed_error_and_the_rest_is_ingested() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("t");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(
        tree.join("broken.png"),
        b"\x89PNG\r\n\x1a\n then nothing an image needs",
    )
    .unwrap();
    std::fs::write(tree.join("ok.txt"), "fine\n").unwrap();
    let out = scout(dir.path())
        .args(["ingest", "--no-tokens", "--json", "--corpus"])
        .arg(dir.path().join("c.db"))
        .arg(&tree)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let s = json(&out);
    assert_eq!(s["documents"], 1);
    assert_eq!(s["skipped"]["image_error"], 1, "{s:#}");
    assert_eq!(s["errors"], 1);
}

/// The effective user id, from the owner of this process's /proc entry.
fn euid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").unwrap().uid()
}

#[test]
fn an_unreadable_folder_and_file_are_counted_skips() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mode = |p: &std::path::Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    mode(dir.path(), 0o755);
    let tree = dir.path().join("t");
    std::fs::create_dir_all(tree.join("locked")).unwrap();
    std::fs::write(tree.join("ok.txt"), "readable\n").unwrap();
    std::fs::write(tree.join("secret.txt"), "no one may read this\n").unwrap();
    std::fs::write(tree.join("locked/inside.txt"), "hidden by the folder\n").unwrap();
    mode(&tree.join("locked"), 0o000);
    mode(&tree.join("secret.txt"), 0o000);
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    mode(&out_dir, 0o777);
    // root reads everything: run the check as `nobody`, from a copy of the
    // binary that `nobody` can reach.
    let mut cmd = if euid() == 0 {
        let bin = dir.path().join("scout");
        std::fs::copy(env!("CARGO_BIN_EXE_scout"), &bin).unwrap();
        mode(&bin, 0o755);
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(bin);
        c
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_scout"))
    };
    let out = cmd
        .current_dir(&out_dir)
        .env("SCOUT_CACHE_DIR", &out_dir)
        .args(["ingest", "--no-tokens", "--json", "--corpus", "c.db"])
        .arg(&tree)
        .output()
        .unwrap();
    mode(&tree.join("locked"), 0o755);
    // Read errors are errors (exit 2), each one counted and named.
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let s = json(&out);
    assert_eq!(s["documents"], 1, "{s:#}");
    assert_eq!(s["skipped"]["unreadable"], 2, "the folder and the file: {s:#}");
    assert_eq!(s["errors"], 2);
    let listed = s["skips"].to_string();
    assert!(listed.contains("locked") && listed.contains("secret.txt"), "{s:#}");
}

#[test]
fn git_history_dates_documents_and_records_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let git = |args: &[&str], date: &str| crate::util::git_at(&repo, args, date);
    git(&["init", "-q"], "");
    std::fs::write(repo.join("stable.py"), "A = 1\n").unwrap();
    std::fs::write(repo.join("busy.py"), "B = 1\n").unwrap();
    git(&["add", "."], "");
    git(&["commit", "-qm", "one"], "1000000000 +0000");
    std::fs::write(repo.join("busy.py"), "B = 2\n").unwrap();
    git(&["commit", "-qam", "two"], "1100000000 +0000");
    crate::util::backdate(&repo);
    let corpus = dir.path().join("c.db");
    let ingest_into = |corpus: &std::path::Path, args: &[&str]| {
        let out = scout(dir.path())
            .args(["ingest", "--no-tokens", "--json", "--corpus"])
            .arg(corpus)
            .args(args)
            .arg(&repo)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        json(&out)
    };
    let ingest = || ingest_into(&corpus, &[]);
    let times_in = |corpus: &std::path::Path| {
        let c = scout::corpus::Corpus::open(corpus).unwrap();
        let mut t: Vec<(String, i64, u32)> = c
            .documents()
            .unwrap()
            .into_iter()
            .map(|d| (d.path.rsplit('/').next().unwrap().to_owned(), d.modified, d.commits))
            .collect();
        t.sort();
        t
    };
    let times = || times_in(&corpus);
    let s = ingest();
    assert_eq!(s["git"][0]["dated"], 2, "{s:#}");
    assert_eq!(s["git"][0]["incremental"], false);
    assert_eq!(s["git"][0]["history"], "read");
    assert_eq!(s["git"][0]["commit"].as_str().unwrap().len(), 40);
    // With when each file last changed, how many commits changed it.
    let whole = vec![
        ("busy.py".into(), 1_100_000_000, 2),
        ("stable.py".into(), 1_000_000_000, 1),
    ];
    assert_eq!(times(), whole);
    // Another corpus of the same checkout at the same commit reads no
    // history: it takes what the first one kept, and dates the same.
    let other = dir.path().join("other.db");
    let s = ingest_into(&other, &[]);
    assert_eq!(s["git"][0]["history"], "cached", "{s:#}");
    assert_eq!(times_in(&other), whole);
    // Only the last commit read: the file it does not touch is dated just
    // before it and still goes first.
    let bounded = dir.path().join("bounded.db");
    let s = ingest_into(&bounded, &["--git-history", "1"]);
    assert_eq!(s["git"][0]["bounded"], 1, "{s:#}");
    assert_eq!(
        times_in(&bounded),
        vec![
            ("busy.py".into(), 1_100_000_000, 1),
            ("stable.py".into(), 1_099_999_999, 0)
        ]
    );
    // Touching a file (same content) does not move it in the order.
    let f = std::fs::File::options()
        .write(true)
        .open(repo.join("stable.py"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    let s = ingest();
    assert_eq!(s["unchanged"], 1, "{s:#}");
    assert_eq!(times()[1].1, 1_000_000_000);
    // A new commit: only its files are dated again, and their commit
    // counts grow by the new commits (the rewritten row keeps its count).
    std::fs::write(repo.join("stable.py"), "A = 2\n").unwrap();
    git(&["commit", "-qam", "three"], "1200000000 +0000");
    let s = ingest();
    assert_eq!(s["git"][0]["incremental"], true, "{s:#}");
    assert_eq!(s["git"][0]["dated"], 1);
    let now = vec![
        ("busy.py".into(), 1_100_000_000, 2),
        ("stable.py".into(), 1_200_000_000, 2),
    ];
    assert_eq!(times(), now);
    // A new corpus at the new commit: the kept history and the one commit
    // since, which date as the whole history does.
    let later = dir.path().join("later.db");
    let s = ingest_into(&later, &[]);
    assert_eq!(s["git"][0]["history"], "extended", "{s:#}");
    assert_eq!(times_in(&later), now);
}

#[test]
fn prefix_stability_replays_commits_in_both_orders() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let git = |args: &[&str], date: &str| crate::util::git_at(&repo, args, date);
    git(&["init", "-q"], "");
    // a.py changes in every commit; z.py, large and never changed, sorts
    // after it by path but before it by last change.
    std::fs::write(repo.join("z.py"), "STABLE = 1\n".repeat(50)).unwrap();
    git(&["add", "."], "");
    git(&["commit", "-qm", "stable"], "900000000 +0000");
    for (i, date) in ["1000000000 +0000", "1100000000 +0000", "1200000000 +0000"]
        .iter()
        .enumerate()
    {
        std::fs::write(repo.join("a.py"), format!("HOT = {i}\n")).unwrap();
        git(&["add", "."], "");
        git(&["commit", "-qm", &format!("c{i}")], date);
    }
    let out = scout(dir.path())
        .args(["bench", "prefix-stability", "--json", "--commits", "2", "--repo"])
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let r = json(&out);
    let commits = r["commits"].as_array().unwrap();
    assert_eq!(commits.len(), 2, "{r:#}");
    for c in commits {
        assert_eq!(c["changed_documents"], 1, "{r:#}");
        // Path order: a.py comes first and changed, nothing survives.
        assert_eq!(c["path_order"], 0.0, "{r:#}");
        // scout's order: z.py first, unchanged; it is most of the tokens.
        assert!(c["scout_order"].as_f64().unwrap() > 0.8, "{r:#}");
        // By document: every token but the changed file's.
        let by_document = c["by_document"].as_f64().unwrap();
        assert!(
            by_document >= c["scout_order"].as_f64().unwrap() && by_document < 1.0,
            "{r:#}"
        );
    }
    // The repository's own working tree was not touched.
    assert_eq!(std::fs::read_to_string(repo.join("a.py")).unwrap(), "HOT = 2\n");
}

/// Logos and icons are documents without OCR, counted; `--ocr-all` reads
/// them too.
#[test]
fn decorative_images_are_passed_over_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    // A scan large enough to read; by name, one copy is a logo.
    let png = std::fs::read(data("receipts/receipt1.png")).unwrap();
    std::fs::write(tree.join("diagram.png"), &png).unwrap();
    std::fs::write(tree.join("brand-Logo.png"), &png).unwrap();
    let ingest = |name: &str, args: &[&str]| {
        let out = scout(dir.path())
            .args(["ingest", "--no-tokens", "--json", "--corpus"])
            .arg(dir.path().join(name))
            .args(args)
            .arg(&tree)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        json(&out)
    };
    let s = ingest("a.db", &[]);
    assert_eq!(s["documents"], 2, "{s:#}");
    assert_eq!(s["ocr"]["decorative"], 1, "{s:#}");
    let read: u64 = s["ocr"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(read, 2, "the diagram is read: {s:#}");
    let s = ingest("b.db", &["--ocr-all"]);
    assert!(s["ocr"].get("decorative").is_none(), "{s:#}");
    let s = ingest("c.db", &["--ocr-skip", "diagram"]);
    assert_eq!(s["ocr"]["decorative"], 1, "the words given replace the default: {s:#}");
}

/// The corpus keeps an image file's bytes (for engines that read images);
/// a corpus made before it did gets them on its next ingest, although the
/// file did not change.
#[test]
fn image_files_are_kept_and_an_older_corpus_gets_them_on_reingest() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    let png = std::fs::read(data("mixed/docs/diagram.png")).unwrap();
    std::fs::write(tree.join("diagram.png"), &png).unwrap();
    std::fs::write(tree.join("notes.txt"), "Notes.\n").unwrap();
    crate::util::backdate(&tree);
    let corpus = dir.path().join("c.db");
    let kept = || {
        let c = scout::corpus::Corpus::open(&corpus).unwrap();
        let doc = c
            .documents()
            .unwrap()
            .into_iter()
            .find(|d| d.path.ends_with("diagram.png"))
            .unwrap();
        c.page_image(doc.id, 1).unwrap()
    };
    let ingest = || {
        let out = crate::util::ingest(dir.path(), &corpus, &tree, &["--no-ocr"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        json(&out)
    };
    ingest();
    assert_eq!(kept().as_deref(), Some(png.as_slice()));
    // As an older scout left it: no image bytes.
    rusqlite::Connection::open(&corpus)
        .unwrap()
        .execute("DELETE FROM page_images", [])
        .unwrap();
    assert_eq!(kept(), None);
    let s = ingest();
    assert_eq!(
        (s["reused"].as_u64(), s["unchanged"].as_u64(), s["changed"].as_u64()),
        (Some(1), Some(1), Some(0)),
        "notes.txt not read again; the image read again, the same: {s:#}"
    );
    assert_eq!(kept().as_deref(), Some(png.as_slice()), "its bytes kept now");
    let s = ingest();
    assert_eq!(s["reused"], 2, "and from then on not read again: {s:#}");
}

/// The corpus's token total after each re-ingest (which counts only what
/// changed, and sums the stored totals) equals a count of every document
/// from scratch: also when an earlier run counted nothing.
#[test]
fn reingest_token_totals_equal_a_count_from_scratch() {
    use scout::corpus::Corpus;
    use scout::engine::llamacpp::LlamaCppTokenizer;
    use scout::ingest::WalkOptions;
    use scout::prompt::{count_block, render_document};
    use scout::tasks::ingest::{corpus_tokens, document_tokens, ingest};

    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("a.rs"), "fn a() -> u32 {\n    1\n}\n").unwrap();
    std::fs::write(tree.join("b.md"), "# Beta\n\nSome prose, déjà vu.\n").unwrap();
    std::fs::write(tree.join("c.txt"), "gamma\n").unwrap();
    crate::util::backdate(&tree);
    let tok = LlamaCppTokenizer::load(model()).unwrap();
    let mut corpus = Corpus::open(&dir.path().join("c.db")).unwrap();
    let roots = [tree.clone()];
    let opts = WalkOptions::default();
    let from_scratch = |corpus: &Corpus| -> u64 {
        let docs = corpus.documents().unwrap();
        docs.iter()
            .map(|d| u64::from(count_block(&render_document(d, corpus.salt()), &tok).total()))
            .sum()
    };
    let check = |corpus: &mut Corpus, with_tokens: bool| {
        let summary = ingest(corpus, &roots, &opts, with_tokens.then_some(&tok as _), &mut |_| {}).unwrap();
        let expected = from_scratch(corpus);
        if with_tokens {
            assert_eq!(summary.tokens, expected);
        }
        assert_eq!(corpus_tokens(corpus, &tok).unwrap(), expected);
        let listed: u64 = document_tokens(corpus, &tok).unwrap().iter().map(|d| d.2).sum();
        assert_eq!(listed, expected);
        summary
    };
    let first = check(&mut corpus, true);
    assert_eq!(first.added, 3);
    std::fs::write(tree.join("a.rs"), "fn a() -> u32 {\n    2 + 40\n}\n").unwrap();
    std::fs::remove_file(tree.join("c.txt")).unwrap();
    std::fs::write(tree.join("d.py"), "def d():\n    return 'δ'\n").unwrap();
    crate::util::backdate(&tree);
    let second = check(&mut corpus, true);
    assert_eq!(
        (second.added, second.changed, second.removed, second.reused),
        (1, 1, 1, 1)
    );
    // A run without a tokenizer leaves the edited file uncounted; the
    // total counts it then.
    std::fs::write(tree.join("b.md"), "# Beta\n\nOther prose.\n").unwrap();
    let third = check(&mut corpus, false);
    assert_eq!(third.changed, 1);
    check(&mut corpus, true);
}

/// A one-page PDF whose font is a reference to an object that is not
/// there: `pdf_oxide` reads next to no text from it, so pdf-extract is asked
/// for the page, and pdf-extract panics on the missing object.
fn pdf_with_a_missing_font() -> Vec<u8> {
    use std::fmt::Write;
    // "Hi" on the page, and a line drawn below it, off the page: pdf_oxide
    // reads two characters, a thin page whose strings could hold more, so
    // pdf-extract is asked for it, and panics on the missing font.
    let content = "BT /F1 12 Tf 20 100 Td (Hi) Tj 20 -900 Td (harbourharbourharbour) Tj ET";
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Resources << /Font << /F1 70 0 R >> >> /Contents 4 0 R >>"
            .to_owned(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
    ];
    let mut pdf = String::from("%PDF-1.4\n");
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        write!(pdf, "{} 0 obj\n{object}\nendobj\n", i + 1).unwrap();
    }
    let xref = pdf.len();
    write!(pdf, "xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).unwrap();
    for offset in offsets {
        writeln!(pdf, "{offset:010} 00000 n ").unwrap();
    }
    write!(
        pdf,
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    )
    .unwrap();
    pdf.into_bytes()
}

/// A parser's panic in the PDF worker is one line on its stderr, never a
/// backtrace, whatever `RUST_BACKTRACE` says (symbolizing one took about 0.4 s
/// of CPU, more than reading most PDFs), and the file is still read; the
/// same worker then reads the next document it is given.
#[test]
fn a_parser_panic_in_the_pdf_worker_is_one_line_without_a_backtrace() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_scout"))
        .args(["pdf-worker", "--max-memory", "4000000000"])
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pdf = pdf_with_a_missing_font();
    let mut request = format!("{{\"path\":\"m.pdf\",\"seconds\":20,\"bytes\":{}}}\n", pdf.len()).into_bytes();
    request.extend_from_slice(&pdf);
    // Two documents, one after the other, then the end of input.
    child.stdin.take().unwrap().write_all(&request.repeat(2)).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("missing object reference"),
        "pdf-extract was asked and panicked: {stderr}"
    );
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
    let answers: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 2, "one answer line per document");
    for result in answers {
        assert_eq!(result["Ok"]["pages"].as_array().map(Vec::len), Some(1), "{result}");
    }
}
