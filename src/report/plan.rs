//! `scout plan` as tables people read.
//!
//! In: the planner's numbers. Out: text. Never computes a figure itself.

use std::fmt::Write as _;

use crate::kv::plan::{overhead_bytes, Fit, KvCost, KvType, Plan, GIB, QUANTS, RUNTIME_OVERHEAD_BYTES, UBATCH};
use crate::model::facts::LocalAttention;

fn gib(bytes: f64) -> String {
    format!("{:.1} GiB", bytes / GIB)
}

fn params(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} B", n / 1e9)
    } else {
        format!("{:.1} M", n / 1e6)
    }
}

fn tokens(n: u64) -> String {
    match n {
        0 => "-".to_owned(),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 10_000 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

/// The whole plan: model, KV, quantizations, devices.
#[must_use]
pub fn plan_text(p: &Plan, detail_quant: &str) -> String {
    let m = &p.model;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({}): {} layers, hidden {}, {} heads / {} KV heads x {}, vocab {}",
        m.name, m.source, m.layers, m.hidden, m.heads, m.kv_heads, m.head_dim, m.vocab
    );
    let pg = &m.params;
    let _ = writeln!(
        out,
        "  parameters: {} total ({} text + {} vision), {} active per token",
        params(pg.total()),
        params(pg.total() - pg.vision),
        params(pg.vision),
        params(pg.active())
    );
    if let Some(e) = m.experts {
        let _ = writeln!(
            out,
            "  experts: {} per layer on {} layers, {} active + {} shared, FFN {}",
            e.experts, e.layers, e.active, e.shared, e.ffn
        );
    }
    let a = &m.attention;
    match (a.window, a.local) {
        (Some(w), Some(kind)) => {
            let _ = writeln!(
                out,
                "  attention: {} global layers keep the whole context; {} {} layers keep {} tokens",
                a.global_layers,
                a.local_layers,
                match kind {
                    LocalAttention::Chunked => "chunked",
                    LocalAttention::Sliding => "sliding-window",
                },
                w
            );
        }
        _ => {
            let _ = writeln!(out, "  attention: all {} layers keep the whole context", m.layers);
        }
    }
    if m.max_context > 0 {
        let _ = writeln!(out, "  max context: {}", m.max_context);
    }
    let kv = &p.kv;
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "KV cache ({}): naive {:.0} KiB/token (every layer keeps every token); chunk-aware {:.0} KiB/token{}",
        p.kv_type.name(),
        kv.naive_per_token / 1024.0,
        kv.chunk_aware_per_token / 1024.0,
        if kv.local_fixed > 0.0 {
            format!(" + {} once local layers are full", gib(kv.local_fixed))
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "  at {} tokens: naive {}, chunk-aware {}",
        p.context,
        gib(p.kv_naive_bytes),
        gib(p.kv_chunk_aware_bytes)
    );
    let types: Vec<String> = [KvType::Bf16, KvType::Fp8, KvType::Q8_0, KvType::Q4_0]
        .iter()
        .map(|&t| {
            let c = KvCost::new(m, t);
            format!(
                "{} {:.1}/{:.1}",
                t.name(),
                c.naive_per_token / 1024.0,
                c.chunk_aware_per_token / 1024.0
            )
        })
        .collect();
    let _ = writeln!(out, "  KiB/token naive/chunk-aware by KV type: {}", types.join(", "));
    let _ = writeln!(
        out,
        "  overhead: {:.1} GiB runtime per GPU + a compute buffer for {UBATCH}-token micro-batches ({})",
        RUNTIME_OVERHEAD_BYTES / GIB,
        gib(overhead_bytes(m, 1) - RUNTIME_OVERHEAD_BYTES)
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Memory by quantization at {} tokens (KV chunk-aware {}, overhead for one device):",
        p.context,
        p.kv_type.name()
    );
    let _ = writeln!(
        out,
        "  {:<8} {:>7} {:>11} {:>10} {:>10} {:>11}  {:<13} tensors",
        "quant", "bpw", "weights", "KV", "overhead", "total", "quality"
    );
    for r in &p.quants {
        let _ = writeln!(
            out,
            "  {:<8} {:>7.3} {:>11} {:>10} {:>10} {:>11}  {:<13} {}",
            r.quant.name,
            r.quant.bpw,
            gib(r.weight_bytes),
            gib(r.kv_bytes),
            gib(r.overhead_bytes),
            gib(r.total_bytes),
            r.quality,
            r.quant.note
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Devices with {detail_quant} at {} tokens (decode tokens/s is an upper bound from memory bandwidth; KV on host assumes {:.0} GB of host memory):",
        p.context,
        p.host_memory_bytes / 1e9
    );
    let _ = writeln!(
        out,
        "  {:<24} {:>10} {:>5} {:>12} {:>12} {:>12} {:>14}",
        "device", "usable", "fits", "max ctx", "ctx, KV host", "decode tok/s", "KV host tok/s"
    );
    for f in p.fits.iter().filter(|f| f.quant.eq_ignore_ascii_case(detail_quant)) {
        let _ = writeln!(
            out,
            "  {:<24} {:>10} {:>5} {:>12} {:>12} {:>12} {:>14}",
            f.device,
            gib(f.usable_bytes),
            if f.fits { "yes" } else { "no" },
            tokens(f.max_context_device),
            tokens(f.max_context_host_kv),
            f.decode_tokens_per_s
                .map_or_else(|| "-".to_owned(), |t| format!("<= {t:.0}")),
            f.decode_tokens_per_s_host_kv
                .map_or_else(|| "-".to_owned(), |t| format!("<= {t:.0}")),
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Largest context on the device, by quantization (- = the weights alone do not fit):"
    );
    let _ = write!(out, "  {:<24}", "device");
    for q in QUANTS {
        let _ = write!(out, " {:>8}", q.name);
    }
    let _ = writeln!(out);
    let mut devices: Vec<&str> = Vec::new();
    for f in &p.fits {
        if !devices.contains(&f.device.as_str()) {
            devices.push(&f.device);
        }
    }
    for d in devices {
        let _ = write!(out, "  {d:<24}");
        for q in QUANTS {
            let f: Option<&Fit> = p.fits.iter().find(|f| f.device == d && f.quant == q.name);
            let _ = write!(
                out,
                " {:>8}",
                f.map_or_else(|| "?".to_owned(), |f| tokens(f.max_context_device))
            );
        }
        let _ = writeln!(out);
    }
    out
}
