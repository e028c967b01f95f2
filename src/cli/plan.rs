//! `scout plan`: arguments, and `--measure`, which runs a model here.
//!
//! Never writes to stdout but the plan itself.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;

use crate::engine::llamacpp::{LlamaCppEngine, LlamaCppOptions};
use crate::engine::{threads, ChatMessage, Engine, GenerateParams, Role};
use crate::kv::plan::{self, devices, machine, Emit, KvType, DEFAULT_HOST_MEMORY_GB};
use crate::model::facts;
use crate::model::store;
use crate::report;

// Doc comments here are --help text, where backticks would print as-is.
#[allow(clippy::doc_markdown)]
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The model: a preset (scout, maverick, smollm2), a Hugging Face config.json or the
    /// folder holding it, or a .gguf file (parameters counted from its tensors).
    #[arg(long, default_value = "scout")]
    model: String,
    /// Context tokens to plan for.
    #[arg(long, default_value_t = 131_072)]
    context: u64,
    /// KV cache element type.
    #[arg(long, value_enum, default_value_t = KvType::Bf16)]
    kv_type: KvType,
    /// Devices to show: names or parts of names, comma-separated (e.g. "H100,4x H200").
    /// Default: every built-in device.
    #[arg(long, value_delimiter = ',')]
    devices: Vec<String>,
    /// A TOML file of more devices ([[device]] name, memory_gb, bandwidth_gbs,
    /// optional host_link_gbs, count, usable_fraction).
    #[arg(long, value_name = "FILE")]
    devices_file: Option<PathBuf>,
    /// The quantization for the device table and --emit.
    #[arg(long, default_value = "Q4_K_M")]
    quant: String,
    /// Host memory (GB) available for KV kept off the device.
    #[arg(long, default_value_t = DEFAULT_HOST_MEMORY_GB)]
    host_memory: f64,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
    /// Print a launch command for the first device of --devices, with --quant, at the
    /// largest context up to --context that fits.
    #[arg(long, value_enum)]
    emit: Option<Emit>,
    /// The weights --emit names: a Hugging Face id or folder (vllm, sglang) or a GGUF file
    /// (llama-server, scout). Default: the model's public id or a placeholder file name.
    #[arg(long)]
    weights: Option<String>,
    /// Also measure this machine: memory bandwidth, and prefill/decode speed of the
    /// default model (or --measure-model), shown beside the estimate.
    #[arg(long)]
    measure: bool,
    /// The GGUF model --measure runs (default: the embedded default model).
    #[arg(long, value_name = "FILE.gguf")]
    measure_model: Option<PathBuf>,
}

/// What `--measure` found.
#[derive(Debug, Serialize)]
struct Measured {
    model: String,
    memory_bandwidth_gbs: f64,
    threads: u32,
    prompt_tokens: u32,
    prefill_tokens_per_s: f64,
    decode_tokens_per_s: f64,
    /// Bandwidth over the bytes read per token (weights, file size): the
    /// same upper bound the device table uses.
    estimated_decode_tokens_per_s: f64,
}

fn select_devices(a: &PlanArgs) -> Result<Vec<devices::Device>> {
    let mut all = devices::builtin();
    if let Some(path) = &a.devices_file {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut extra = devices::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        // User devices come first: they are what the user asked about.
        extra.append(&mut all);
        all = extra;
    }
    if a.devices.is_empty() {
        return Ok(all);
    }
    let mut chosen = Vec::new();
    for want in &a.devices {
        let want_l = want.trim().to_lowercase();
        // An exact name wins; else every device whose name contains it.
        let exact: Vec<_> = all
            .iter()
            .filter(|d| d.name.to_lowercase() == want_l)
            .cloned()
            .collect();
        let hits: Vec<_> = if exact.is_empty() {
            all.iter()
                .filter(|d| d.name.to_lowercase().contains(&want_l))
                .cloned()
                .collect()
        } else {
            exact
        };
        if hits.is_empty() {
            let names: Vec<&str> = all.iter().map(|d| d.name.as_str()).collect();
            bail!("no device matches {want:?}; known: {}", names.join(", "));
        }
        for d in hits {
            if !chosen.contains(&d) {
                chosen.push(d);
            }
        }
    }
    Ok(chosen)
}

fn measure(a: &PlanArgs) -> Result<(Measured, devices::Device)> {
    eprintln!("scout: measuring memory bandwidth");
    let bandwidth = machine::memory_bandwidth();
    let path = store::resolve(a.measure_model.as_deref(), &mut |l| eprintln!("{l}"))?;
    let threads = threads::free_cores();
    eprintln!("scout: measuring {} with {threads} thread(s)", path.display());
    let mut engine = LlamaCppEngine::load(
        &path,
        LlamaCppOptions {
            threads,
            context: Some(4096),
            ..LlamaCppOptions::default()
        },
    )?;
    // About 1,000 tokens of plain text, then 64 generated tokens.
    let text: String = (1..=120)
        .map(|i| format!("Line {i}: the warehouse counted {i} crates of bolts.\n"))
        .collect();
    let messages = [
        ChatMessage::new(Role::System, text),
        ChatMessage::new(Role::User, "Summarise the lines above."),
    ];
    let params = GenerateParams {
        max_tokens: 64,
        repeat_penalty: 1.0,
        ..GenerateParams::default()
    };
    let g = engine.generate(&messages, &params, &mut |_| {})?;
    let file_bytes = std::fs::metadata(&path).map_or(0, |m| m.len()) as f64;
    let me = machine::this_machine(bandwidth);
    let measured = Measured {
        model: path.display().to_string(),
        memory_bandwidth_gbs: bandwidth / 1e9,
        threads,
        prompt_tokens: g.prompt_tokens,
        prefill_tokens_per_s: f64::from(g.prompt_tokens) / (g.prefill_ms.max(1) as f64 / 1000.0),
        decode_tokens_per_s: f64::from(g.completion_tokens) / (g.decode_ms.max(1) as f64 / 1000.0),
        estimated_decode_tokens_per_s: bandwidth / file_bytes.max(1.0),
    };
    Ok((measured, me))
}

/// Default `--weights` for `--emit`.
fn default_weights(a: &PlanArgs, how: Emit) -> String {
    let hf = match a.model.to_lowercase().as_str() {
        "scout" => "meta-llama/Llama-4-Scout-17B-16E-Instruct".to_owned(),
        "maverick" => "meta-llama/Llama-4-Maverick-17B-128E-Instruct".to_owned(),
        "smollm2" => "HuggingFaceTB/SmolLM2-135M-Instruct".to_owned(),
        other => other.trim_end_matches("/config.json").to_owned(),
    };
    match how {
        Emit::Vllm | Emit::Sglang => hf,
        Emit::LlamaServer | Emit::Scout => {
            if std::path::Path::new(&a.model)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
            {
                a.model.clone()
            } else {
                format!("{}-{}.gguf", hf.rsplit('/').next().unwrap_or("model"), a.quant)
            }
        }
    }
}

pub fn run(a: &PlanArgs) -> Result<i32> {
    let facts = facts::load(&a.model)?;
    let Some(quant) = plan::quant(&a.quant) else {
        let names: Vec<&str> = plan::QUANTS.iter().map(|q| q.name).collect();
        bail!("unknown quantization {:?}; known: {}", a.quant, names.join(", "));
    };
    if a.context == 0 {
        bail!("--context must be at least 1");
    }
    let mut devs = select_devices(a)?;
    let measured = if a.measure {
        let (m, me) = measure(a)?;
        devs.push(me);
        Some(m)
    } else {
        None
    };
    let planned = plan::plan(facts, a.context, a.kv_type, &devs, a.host_memory);
    let mut out = std::io::stdout().lock();
    if let Some(how) = a.emit {
        let device = devs.first().context("--emit needs a device")?;
        let fit = planned
            .fits
            .iter()
            .find(|f| f.device == device.name && f.quant == quant.name)
            .context("no plan row for that device")?;
        if fit.max_context_device == 0 {
            bail!(
                "{} does not hold {} weights of {} (plus overhead); pick a larger set with --devices",
                device.name,
                quant.name,
                planned.model.name
            );
        }
        let weights = a.weights.clone().unwrap_or_else(|| default_weights(a, how));
        writeln!(out, "{}", plan::emit(&planned, fit, device, how, &weights))?;
        return Ok(0);
    }
    if a.json {
        let mut value = serde_json::to_value(&planned)?;
        if let Some(m) = &measured {
            value["measured"] = serde_json::to_value(m)?;
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        write!(out, "{}", report::plan::plan_text(&planned, quant.name))?;
        if let Some(m) = &measured {
            writeln!(out)?;
            writeln!(
                out,
                "This machine, measured with {} ({} thread(s), {} prompt tokens): memory bandwidth {:.1} GB/s; \
                 prefill {:.0} tokens/s; decode {:.1} tokens/s against an estimated ceiling of {:.0} tokens/s.",
                m.model,
                m.threads,
                m.prompt_tokens,
                m.memory_bandwidth_gbs,
                m.prefill_tokens_per_s,
                m.decode_tokens_per_s,
                m.estimated_decode_tokens_per_s
            )?;
        }
    }
    Ok(0)
}
