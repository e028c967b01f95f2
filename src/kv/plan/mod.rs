//! `scout plan`: weights by quantization, KV bytes per token, what fits on
//! which device at which context, and an upper bound on decode speed.
//!
//! Every figure is computed from first principles and the stated
//! assumptions below; nothing is looked up from a table of results.
//! - Weights: each parameter group times its bits per weight ([`Quant`]).
//! - KV per token and layer: 2 (K and V) x KV heads x head_dim x bytes per
//!   element of the KV type. "Naive" keeps the whole context in every
//!   layer (what mistral.rs does for Llama 4); "chunk-aware" keeps it only
//!   in global layers, and at most `window` tokens in chunked or sliding
//!   layers (what llama.cpp, vLLM and SGLang do).
//! - Overhead: [`RUNTIME_OVERHEAD_BYTES`] per GPU plus a compute buffer for
//!   a 512-token micro-batch (logits and activations).
//! - Decode speed: memory bandwidth divided by the bytes read per generated
//!   token (active weights plus the KV read at that context). An upper
//!   bound: real engines reach perhaps 50-80% of it.
//!
//! Never imports an engine: `--measure` is run by the CLI.

pub mod devices;
pub mod machine;

use serde::Serialize;

use crate::model::facts::ModelFacts;
use devices::Device;

/// CUDA context, cuBLAS workspaces and allocator slack per GPU.
pub const RUNTIME_OVERHEAD_BYTES: f64 = 1.5 * GIB;

/// Micro-batch the compute buffer is sized for (llama.cpp's default).
pub const UBATCH: f64 = 512.0;

/// Host memory available for KV when it is kept off the device, by default.
pub const DEFAULT_HOST_MEMORY_GB: f64 = 256.0;

pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// KV cache element types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum KvType {
    Bf16,
    Fp8,
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q4_0")]
    Q4_0,
}

impl KvType {
    /// Bytes per element: q8_0 stores 32 values in 34 bytes, q4_0 in 18.
    #[must_use]
    pub fn bytes(self) -> f64 {
        match self {
            KvType::Bf16 => 2.0,
            KvType::Fp8 => 1.0,
            KvType::Q8_0 => 34.0 / 32.0,
            KvType::Q4_0 => 18.0 / 32.0,
        }
    }

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            KvType::Bf16 => "bf16",
            KvType::Fp8 => "fp8",
            KvType::Q8_0 => "q8_0",
            KvType::Q4_0 => "q4_0",
        }
    }
}

/// A weight quantization and the bits each parameter group gets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quant {
    pub name: &'static str,
    /// Attention and FFN / expert weights.
    pub bpw: f64,
    /// Token embeddings.
    pub embedding_bpw: f64,
    /// Output projection (lm_head).
    pub output_bpw: f64,
    /// Norms and expert routers.
    pub small_bpw: f64,
    /// Vision tower and projector (kept unquantized).
    pub vision_bpw: f64,
    pub note: &'static str,
}

const Q6_K: f64 = 210.0 * 8.0 / 256.0;

/// The quantizations `scout plan` lists. GGUF bits per weight come from
/// ggml's block layouts (Q2_K: 84 bytes per 256 weights = 2.625; Q3_K 110 =
/// 3.4375; Q4_K 144 = 4.5; Q5_K 176 = 5.5; Q6_K 210 = 6.5625; Q8_0 34 bytes
/// per 32 = 8.5). llama.cpp's `_M` mixes store a few tensors (attention V,
/// some FFN down) one type higher, so real files run a few percent larger.
pub const QUANTS: &[Quant] = &[
    Quant {
        name: "Q2_K",
        bpw: 2.625,
        embedding_bpw: 2.625,
        output_bpw: Q6_K,
        small_bpw: 32.0,
        vision_bpw: 16.0,
        note: "GGUF; output at Q6_K, norms and routers F32",
    },
    Quant {
        name: "Q3_K_M",
        bpw: 3.4375,
        embedding_bpw: 3.4375,
        output_bpw: Q6_K,
        small_bpw: 32.0,
        vision_bpw: 16.0,
        note: "GGUF Q3_K; output at Q6_K, norms and routers F32",
    },
    Quant {
        name: "Q4_K_M",
        bpw: 4.5,
        embedding_bpw: 4.5,
        output_bpw: Q6_K,
        small_bpw: 32.0,
        vision_bpw: 16.0,
        note: "GGUF Q4_K; output at Q6_K, norms and routers F32",
    },
    Quant {
        name: "Q5_K_M",
        bpw: 5.5,
        embedding_bpw: 5.5,
        output_bpw: Q6_K,
        small_bpw: 32.0,
        vision_bpw: 16.0,
        note: "GGUF Q5_K; output at Q6_K, norms and routers F32",
    },
    Quant {
        name: "Q6_K",
        bpw: Q6_K,
        embedding_bpw: Q6_K,
        output_bpw: Q6_K,
        small_bpw: 32.0,
        vision_bpw: 16.0,
        note: "GGUF; norms and routers F32",
    },
    Quant {
        name: "Q8_0",
        bpw: 8.5,
        embedding_bpw: 8.5,
        output_bpw: 8.5,
        small_bpw: 32.0,
        vision_bpw: 16.0,
        note: "GGUF; norms and routers F32",
    },
    Quant {
        name: "FP8",
        bpw: 8.0,
        embedding_bpw: 16.0,
        output_bpw: 16.0,
        small_bpw: 16.0,
        vision_bpw: 16.0,
        note: "linear layers FP8 (per-channel scales not counted); embeddings, lm_head, norms BF16",
    },
    Quant {
        name: "BF16",
        bpw: 16.0,
        embedding_bpw: 16.0,
        output_bpw: 16.0,
        small_bpw: 16.0,
        vision_bpw: 16.0,
        note: "unquantized",
    },
];

#[must_use]
pub fn quant(name: &str) -> Option<&'static Quant> {
    QUANTS.iter().find(|q| q.name.eq_ignore_ascii_case(name))
}

impl Quant {
    /// Bytes of all weights.
    #[must_use]
    pub fn weight_bytes(&self, f: &ModelFacts) -> f64 {
        let p = &f.params;
        ((p.attention + p.ffn) as f64 * self.bpw
            + p.embedding as f64 * self.embedding_bpw
            + p.output as f64 * self.output_bpw
            + p.small as f64 * self.small_bpw
            + p.vision as f64 * self.vision_bpw)
            / 8.0
    }

    /// Bytes of weights read to generate one token: attention, active
    /// experts and dense FFNs, output, norms, one embedding row.
    #[must_use]
    pub fn active_bytes(&self, f: &ModelFacts) -> f64 {
        let p = &f.params;
        ((p.attention + p.ffn_active) as f64 * self.bpw
            + p.output as f64 * self.output_bpw
            + p.small as f64 * self.small_bpw
            + f.hidden as f64 * self.embedding_bpw)
            / 8.0
    }
}

/// KV cache sizes for one model and KV type.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KvCost {
    /// One token in one layer: 2 x KV heads x head_dim x element bytes.
    pub per_token_layer: f64,
    /// Every layer keeps every token.
    pub naive_per_token: f64,
    /// Only global layers grow with context.
    pub chunk_aware_per_token: f64,
    /// What local (chunked or sliding) layers hold once full.
    pub local_fixed: f64,
}

impl KvCost {
    #[must_use]
    pub fn new(f: &ModelFacts, kv: KvType) -> Self {
        let per_token_layer = 2.0 * f64::from(f.kv_heads) * f.head_dim as f64 * kv.bytes();
        let window = f.attention.window.unwrap_or(0) as f64;
        Self {
            per_token_layer,
            naive_per_token: per_token_layer * f64::from(f.layers),
            chunk_aware_per_token: per_token_layer * f64::from(f.attention.global_layers),
            local_fixed: per_token_layer * f64::from(f.attention.local_layers) * window,
        }
    }

    /// Bytes at `context` tokens, every layer keeping all of them.
    #[must_use]
    pub fn naive(&self, context: f64) -> f64 {
        self.naive_per_token * context
    }

    /// Bytes at `context` tokens, local layers capped at their window.
    #[must_use]
    pub fn chunk_aware(&self, context: f64) -> f64 {
        let local_per_token = self.naive_per_token - self.chunk_aware_per_token;
        let local = if local_per_token > 0.0 {
            self.local_fixed.min(local_per_token * context)
        } else {
            0.0
        };
        self.chunk_aware_per_token * context + local
    }

    /// The most tokens whose chunk-aware KV fits in `bytes`, capped at
    /// `max_context` (0 = no cap).
    #[must_use]
    pub fn max_context(&self, bytes: f64, max_context: u64) -> u64 {
        if bytes <= 0.0 {
            return 0;
        }
        let cap = if max_context == 0 { u64::MAX } else { max_context };
        let local_per_token = self.naive_per_token - self.chunk_aware_per_token;
        let window_bytes = if local_per_token > 0.0 {
            self.local_fixed / local_per_token * self.naive_per_token
        } else {
            0.0
        };
        let tokens = if bytes <= window_bytes {
            // Until the local layers hold a full window, every layer grows.
            bytes / self.naive_per_token
        } else if self.chunk_aware_per_token > 0.0 {
            (bytes - self.local_fixed) / self.chunk_aware_per_token
        } else {
            // Only local layers: once they are full, context costs nothing.
            return cap;
        };
        // The tiny epsilon keeps an exact fit from flooring one token short.
        ((tokens + 1e-6).floor() as u64).min(cap)
    }
}

/// Memory the runtime needs beside weights and KV, for `gpus` devices.
#[must_use]
pub fn overhead_bytes(f: &ModelFacts, gpus: u32) -> f64 {
    let compute = UBATCH * (f.vocab as f64 * 4.0 + f.hidden as f64 * 4.0 * 8.0);
    RUNTIME_OVERHEAD_BYTES * f64::from(gpus) + compute
}

/// One quantization at the requested context.
#[derive(Debug, Clone, Serialize)]
pub struct QuantRow {
    pub quant: Quant,
    pub weight_bytes: f64,
    pub active_bytes: f64,
    pub kv_bytes: f64,
    pub overhead_bytes: f64,
    pub total_bytes: f64,
    pub quality: &'static str,
}

/// One device and one quantization.
#[derive(Debug, Clone, Serialize)]
pub struct Fit {
    pub device: String,
    pub quant: &'static str,
    pub usable_bytes: f64,
    /// Weights, KV at the requested context and overhead fit on the device.
    pub fits: bool,
    /// The most context whose KV fits on the device with the weights (0 if
    /// the weights alone do not fit).
    pub max_context_device: u64,
    /// The most context with KV in host memory (weights on the device).
    pub max_context_host_kv: u64,
    /// Upper bound on decode tokens/s at the requested context, KV on the
    /// device (`None` when it does not fit).
    pub decode_tokens_per_s: Option<f64>,
    /// Upper bound with KV read from host memory over the host link.
    pub decode_tokens_per_s_host_kv: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub model: ModelFacts,
    pub context: u64,
    pub kv_type: KvType,
    pub kv: KvCost,
    pub kv_naive_bytes: f64,
    pub kv_chunk_aware_bytes: f64,
    pub host_memory_bytes: f64,
    pub quants: Vec<QuantRow>,
    pub fits: Vec<Fit>,
}

/// Computes the whole plan.
#[must_use]
pub fn plan(model: ModelFacts, context: u64, kv_type: KvType, devices: &[Device], host_memory_gb: f64) -> Plan {
    let kv = KvCost::new(&model, kv_type);
    let ctx = context as f64;
    let kv_bytes = kv.chunk_aware(ctx);
    let host = host_memory_gb * 1e9;
    let quants = QUANTS
        .iter()
        .map(|q| {
            let weight_bytes = q.weight_bytes(&model);
            let overhead = overhead_bytes(&model, 1);
            QuantRow {
                quant: *q,
                weight_bytes,
                active_bytes: q.active_bytes(&model),
                kv_bytes,
                overhead_bytes: overhead,
                total_bytes: weight_bytes + kv_bytes + overhead,
                quality: "not measured",
            }
        })
        .collect();
    let mut fits = Vec::new();
    for d in devices {
        for q in QUANTS {
            let weights = q.weight_bytes(&model);
            let usable = d.usable_bytes();
            let free = usable - weights - overhead_bytes(&model, d.count);
            let active = q.active_bytes(&model);
            let fits_here = free >= kv_bytes;
            let host_link = d.host_link().unwrap_or_else(|| d.bandwidth());
            fits.push(Fit {
                device: d.name.clone(),
                quant: q.name,
                usable_bytes: usable,
                fits: fits_here,
                max_context_device: if free > 0.0 {
                    kv.max_context(free, model.max_context)
                } else {
                    0
                },
                max_context_host_kv: if free >= 0.0 {
                    kv.max_context(host, model.max_context)
                } else {
                    0
                },
                decode_tokens_per_s: fits_here.then(|| d.bandwidth() / (active + kv_bytes)),
                decode_tokens_per_s_host_kv: (free >= 0.0)
                    .then(|| 1.0 / (active / d.bandwidth() + kv_bytes / host_link)),
            });
        }
    }
    Plan {
        kv_naive_bytes: kv.naive(ctx),
        kv_chunk_aware_bytes: kv_bytes,
        model,
        context,
        kv_type,
        kv,
        host_memory_bytes: host,
        quants,
        fits,
    }
}

/// Which launch line to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    Vllm,
    Sglang,
    LlamaServer,
    Scout,
}

/// A launch command for `device` and `quant` at the largest context up to
/// the requested one that fits on the device. `model_ref` names the weights
/// (a Hugging Face id or folder for vLLM/SGLang, a GGUF path otherwise).
#[must_use]
pub fn emit(plan: &Plan, fit: &Fit, device: &Device, how: Emit, model_ref: &str) -> String {
    let ctx = plan.context.min(fit.max_context_device);
    let fp8_weights = fit.quant == "FP8";
    match how {
        Emit::Vllm => {
            let mut s = format!(
                "vllm serve {model_ref} --tensor-parallel-size {} --max-model-len {ctx} --enable-prefix-caching",
                device.count
            );
            s.push_str(match plan.kv_type {
                KvType::Fp8 => " --kv-cache-dtype fp8",
                _ => " --kv-cache-dtype auto",
            });
            if fp8_weights {
                s.push_str(" --quantization fp8");
            }
            s
        }
        Emit::Sglang => {
            let mut s = format!(
                "python -m sglang.launch_server --model-path {model_ref} --tp {} --context-length {ctx}",
                device.count
            );
            if plan.kv_type == KvType::Fp8 {
                s.push_str(" --kv-cache-dtype fp8_e5m2");
            }
            if fp8_weights {
                s.push_str(" --quantization fp8");
            }
            // SGLang's radix prefix cache is on unless --disable-radix-cache.
            s
        }
        Emit::LlamaServer => {
            let cache = match plan.kv_type {
                KvType::Q8_0 | KvType::Fp8 => "q8_0",
                KvType::Q4_0 => "q4_0",
                KvType::Bf16 => "f16",
            };
            format!(
                "llama-server -m {model_ref} -c {ctx} -ngl 999 -fa on --cache-type-k {cache} --cache-type-v {cache} --cache-reuse 256"
            )
        }
        Emit::Scout => {
            // scout's llamacpp engine: the same cache types as llama-server,
            // every layer on the GPU (a `--features cuda` build).
            let kv = match plan.kv_type {
                KvType::Q8_0 | KvType::Fp8 => " --kv-type q8_0",
                KvType::Q4_0 => " --kv-type q4_0",
                KvType::Bf16 => "",
            };
            format!("scout ask --model {model_ref} --context {ctx} --n-gpu-layers 999{kv} PATH \"QUESTION\"")
        }
    }
}

// Sizes here are sums of powers of two and small integers, exact in f64.
#[allow(clippy::float_cmp)]
#[cfg(test)]
mod tests {
    use super::*;

    const KIB: f64 = 1024.0;

    fn scout() -> ModelFacts {
        crate::model::facts::load("scout").unwrap()
    }

    fn device(name: &str) -> Device {
        devices::builtin().into_iter().find(|d| d.name == name).unwrap()
    }

    /// 48 layers x 2 x 8 KV heads x 128 x 2 bytes = 196,608 B = 192 KiB;
    /// only the 12 global layers grow: 49,152 B = 48 KiB; fp8 halves it.
    #[test]
    fn scout_kv_per_token_naive_and_chunk_aware() {
        let f = scout();
        let bf16 = KvCost::new(&f, KvType::Bf16);
        assert_eq!(bf16.naive_per_token, 192.0 * KIB);
        assert_eq!(bf16.chunk_aware_per_token, 48.0 * KIB);
        assert_eq!(KvCost::new(&f, KvType::Fp8).chunk_aware_per_token, 24.0 * KIB);
        // 36 chunked layers x 8192 tokens x 4 KiB = 1.125 GiB once full.
        assert_eq!(bf16.local_fixed, 36.0 * 8192.0 * 4.0 * KIB);
        // Below the chunk size, both ways agree.
        assert_eq!(bf16.chunk_aware(4096.0), bf16.naive(4096.0));
        assert_eq!(
            bf16.chunk_aware(1_000_000.0),
            1_000_000.0 * 48.0 * KIB + 36.0 * 8192.0 * 4.0 * KIB
        );
    }

    #[test]
    fn max_context_inverts_the_kv_size() {
        let bf16 = KvCost::new(&scout(), KvType::Bf16);
        for ctx in [1000u64, 8192, 100_000, 3_000_000] {
            let bytes = bf16.chunk_aware(ctx as f64);
            assert_eq!(bf16.max_context(bytes, 0), ctx, "{ctx}");
        }
        assert_eq!(
            bf16.max_context(1e15, 10_485_760),
            10_485_760,
            "capped at the model's maximum"
        );
    }

    /// Each quantization's weight size is its groups' parameter counts times
    /// the stated bits per weight.
    #[test]
    fn weight_sizes_are_parameters_times_stated_bits() {
        let f = scout();
        let p = f.params;
        for q in QUANTS {
            let by_hand = ((p.attention + p.ffn) as f64 * q.bpw
                + p.embedding as f64 * q.embedding_bpw
                + p.output as f64 * q.output_bpw
                + p.small as f64 * q.small_bpw
                + p.vision as f64 * q.vision_bpw)
                / 8.0;
            assert_eq!(q.weight_bytes(&f), by_hand, "{}", q.name);
        }
        // BF16: 2 bytes a parameter, about 217 GB for 108.6 B parameters.
        let bf16 = quant("BF16").unwrap().weight_bytes(&f);
        assert!((bf16 / (p.total() as f64 * 2.0) - 1.0).abs() < 1e-9);
        // Q4_K_M lands near 61 GB (107.8 B text params x 4.5 bits, plus the
        // output at Q6_K and the vision tower at 16 bits).
        let q4 = quant("Q4_K_M").unwrap().weight_bytes(&f) / 1e9;
        assert!((60.0..64.0).contains(&q4), "{q4}");
    }

    #[test]
    fn q4_on_one_rtx_4090_does_not_fit_but_on_one_h200_it_does() {
        let f = scout();
        let devs = [device("RTX 4090"), device("H200 141GB")];
        let p = plan(f, 131_072, KvType::Bf16, &devs, DEFAULT_HOST_MEMORY_GB);
        let get = |d: &str| p.fits.iter().find(|x| x.device == d && x.quant == "Q4_K_M").unwrap();
        let rtx = get("RTX 4090");
        assert!(!rtx.fits);
        assert_eq!(rtx.max_context_device, 0);
        assert_eq!(rtx.decode_tokens_per_s, None);
        let h200 = get("H200 141GB");
        assert!(h200.fits);
        // 141 GB - ~61.7 GB weights - ~2.1 GB overhead leaves ~77 GB: about
        // 1.5 M tokens at 48 KiB each.
        assert!(
            (1_300_000..1_700_000).contains(&h200.max_context_device),
            "{}",
            h200.max_context_device
        );
        let tps = h200.decode_tokens_per_s.unwrap();
        // Read per token: active weights (3.02 B attention + 12.08 B expert
        // parameters at 4.5 bits = 8.49 GB, lm_head 1.03 B at Q6_K = 0.85
        // GB) plus the KV (131,072 x 48 KiB = 6.44 GB global, 1.21 GB
        // chunked): about 17.0 GB. 4.8 TB/s / 17.0 GB = about 282 tokens/s.
        assert!((270.0..295.0).contains(&tps), "{tps}");
        assert!(
            h200.decode_tokens_per_s_host_kv.unwrap() < tps,
            "KV over PCIe is slower"
        );
    }

    #[test]
    fn bf16_scout_needs_several_h100s() {
        let f = scout();
        let devs = [device("H100 80GB SXM"), device("4x H100 80GB SXM")];
        let p = plan(f, 65_536, KvType::Bf16, &devs, DEFAULT_HOST_MEMORY_GB);
        let get = |d: &str| p.fits.iter().find(|x| x.device == d && x.quant == "BF16").unwrap();
        assert!(!get("H100 80GB SXM").fits);
        assert!(get("4x H100 80GB SXM").fits);
    }

    #[test]
    fn emitted_commands_carry_the_plan() {
        let set = device("8x H200 141GB");
        let planned = plan(
            scout(),
            1_000_000,
            KvType::Fp8,
            std::slice::from_ref(&set),
            DEFAULT_HOST_MEMORY_GB,
        );
        let fit = planned.fits.iter().find(|x| x.quant == "FP8").unwrap();
        let vllm = emit(
            &planned,
            fit,
            &set,
            Emit::Vllm,
            "meta-llama/Llama-4-Scout-17B-16E-Instruct",
        );
        assert_eq!(
            vllm,
            "vllm serve meta-llama/Llama-4-Scout-17B-16E-Instruct --tensor-parallel-size 8 --max-model-len 1000000 \
             --enable-prefix-caching --kv-cache-dtype fp8 --quantization fp8"
        );
        let line = emit(&planned, fit, &set, Emit::LlamaServer, "scout.gguf");
        assert!(line.starts_with("llama-server -m scout.gguf -c 1000000 "), "{line}");
    }
}
