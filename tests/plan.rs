//! `scout plan`: the text table and JSON (snapshots), launch lines, and a
//! measurement of this machine.

use crate::util::{json, model, scout, text};

fn plan(args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    scout(dir.path()).arg("plan").args(args).output().unwrap()
}

#[test]
fn text_table_snapshot() {
    let out = plan(&[
        "--devices",
        "RTX 4090,H100 80GB SXM,H200 141GB,4x H100 80GB SXM,Apple M4 Max 128GB",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    insta::assert_snapshot!(text(&out.stdout));
}

#[test]
fn json_snapshot() {
    let out = plan(&[
        "--devices",
        "RTX 4090,H200 141GB",
        "--context",
        "1000000",
        "--kv-type",
        "fp8",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let value = json(&out);
    assert_eq!(value["kv"]["chunk_aware_per_token"], 24576.0);
    insta::assert_json_snapshot!(value);
}

#[test]
fn emits_launch_lines_for_the_first_device() {
    let out = plan(&[
        "--devices",
        "8x H200 141GB",
        "--quant",
        "FP8",
        "--kv-type",
        "fp8",
        "--context",
        "2000000",
        "--emit",
        "vllm",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "vllm serve meta-llama/Llama-4-Scout-17B-16E-Instruct --tensor-parallel-size 8 --max-model-len 2000000 \
         --enable-prefix-caching --kv-cache-dtype fp8 --quantization fp8"
    );
    let out = plan(&[
        "--devices",
        "H200 141GB",
        "--emit",
        "llama-server",
        "--weights",
        "scout-q4.gguf",
    ]);
    assert_eq!(
        text(&out.stdout).trim(),
        "llama-server -m scout-q4.gguf -c 131072 -ngl 999 -fa on --cache-type-k f16 --cache-type-v f16 --cache-reuse 256"
    );
    // Weights that do not fit are refused, not emitted.
    let out = plan(&["--devices", "RTX 4090", "--emit", "vllm"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("does not hold Q4_K_M weights"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn unknown_inputs_are_clear_errors() {
    let out = plan(&["--devices", "TPU v9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no device matches \"TPU v9\""),
        "{}",
        text(&out.stderr)
    );
    let out = plan(&["--quant", "Q1_X"]);
    assert!(
        text(&out.stderr).contains("unknown quantization"),
        "{}",
        text(&out.stderr)
    );
    let out = plan(&["--model", "/no/such/config.json"]);
    assert!(text(&out.stderr).contains("unknown model"), "{}", text(&out.stderr));
}

#[test]
fn a_gguf_file_is_planned_from_its_own_tensors() {
    let out = plan(&[
        "--model",
        model().to_str().unwrap(),
        "--devices",
        "RTX 4090",
        "--json",
        "--context",
        "8192",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v = json(&out);
    assert_eq!(v["model"]["source"], "gguf");
    assert_eq!(v["model"]["layers"], 30);
    assert_eq!(v["model"]["kv_heads"], 3);
    let total: u64 = ["attention", "ffn", "embedding", "output", "small", "vision"]
        .iter()
        .map(|k| v["model"]["params"][k].as_u64().unwrap())
        .sum();
    assert!((130_000_000..140_000_000).contains(&total), "SmolLM2-135M: {total}");
    // 30 layers x 2 x 3 KV heads x 64 x 2 bytes = 23,040 bytes per token.
    assert_eq!(v["kv"]["naive_per_token"], 23040.0);
}

#[test]
fn measure_runs_the_default_model_here() {
    let dir = tempfile::tempdir().unwrap();
    let out = scout(dir.path())
        .args([
            "plan",
            "--model",
            "smollm2",
            "--devices",
            "RTX 4090",
            "--measure",
            "--json",
            "--measure-model",
        ])
        .arg(model())
        .env("SCOUT_THREADS", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v = json(&out);
    let m = &v["measured"];
    assert!(m["memory_bandwidth_gbs"].as_f64().unwrap() > 0.5, "{m}");
    assert!(m["prefill_tokens_per_s"].as_f64().unwrap() > 1.0, "{m}");
    assert!(m["decode_tokens_per_s"].as_f64().unwrap() > 1.0, "{m}");
    assert!(m["prompt_tokens"].as_u64().unwrap() > 500, "{m}");
    let devices: Vec<&str> = v["fits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["device"].as_str().unwrap())
        .collect();
    assert!(devices.contains(&"this machine (CPU)"), "{devices:?}");
}
