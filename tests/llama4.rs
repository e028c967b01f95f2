//! The Llama 4 Scout code path on a CPU, without Scout's weights: a tiny
//! random-weight Llama 4 written here as a GGUF with the real architecture
//! name, metadata keys, tensor names and special tokens (Scout's layout at
//! toy size: every layer a mixture of experts with a shared expert, top-1
//! routing, chunked attention with every 4th layer global and without
//! rotary embeddings), loaded by scout's llamacpp engine.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use scout::engine::llamacpp::{LlamaCppEngine, LlamaCppOptions};
use scout::engine::{ChatMessage, Engine, GenerateParams, Role};

/// A GGUF metadata value.
enum V {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    Strs(Vec<String>),
    I32s(Vec<i32>),
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// Writes a GGUF v3 file: metadata, then F32 tensors (dims innermost
/// first, as llama.cpp names them), 32-byte aligned.
fn write_gguf(path: &Path, meta: &[(&str, V)], tensors: &[(String, Vec<u64>, Vec<f32>)]) {
    const ALIGN: usize = 32;
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((meta.len() as u64).to_le_bytes());
    for (k, v) in meta {
        put_str(&mut out, k);
        match v {
            V::U32(x) => {
                out.extend(4u32.to_le_bytes());
                out.extend(x.to_le_bytes());
            }
            V::F32(x) => {
                out.extend(6u32.to_le_bytes());
                out.extend(x.to_le_bytes());
            }
            V::Bool(x) => {
                out.extend(7u32.to_le_bytes());
                out.push(u8::from(*x));
            }
            V::Str(s) => {
                out.extend(8u32.to_le_bytes());
                put_str(&mut out, s);
            }
            V::Strs(items) => {
                out.extend(9u32.to_le_bytes());
                out.extend(8u32.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for s in items {
                    put_str(&mut out, s);
                }
            }
            V::I32s(items) => {
                out.extend(9u32.to_le_bytes());
                out.extend(5u32.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for i in items {
                    out.extend(i.to_le_bytes());
                }
            }
        }
    }
    let mut offset = 0usize;
    for (name, dims, data) in tensors {
        assert_eq!(dims.iter().product::<u64>() as usize, data.len(), "{name}");
        put_str(&mut out, name);
        out.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend(d.to_le_bytes());
        }
        out.extend(0u32.to_le_bytes()); // F32
        out.extend((offset as u64).to_le_bytes());
        offset += (data.len() * 4).div_ceil(ALIGN) * ALIGN;
    }
    out.resize(out.len().div_ceil(ALIGN) * ALIGN, 0);
    for (_, _, data) in tensors {
        let start = out.len();
        for x in data {
            out.extend(x.to_le_bytes());
        }
        out.resize(start + (out.len() - start).div_ceil(ALIGN) * ALIGN, 0);
    }
    std::fs::write(path, out).unwrap();
}

/// Llama 4's special tokens, as in Scout's tokenizer.
const SPECIAL: &[&str] = &[
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|header_start|>",
    "<|header_end|>",
    "<|eot|>",
    "<|eom|>",
    "<|image_start|>",
    "<|image_end|>",
    "<|image|>",
    "<|patch|>",
    "<|tile_x_separator|>",
    "<|tile_y_separator|>",
    "<|finetune_right_pad|>",
];

/// GPT-2's byte-to-character map, which Llama 4's BPE vocabulary uses.
fn byte_tokens() -> Vec<String> {
    let mut next = 256u32;
    (0..=255u8)
        .map(|b| {
            if matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF) {
                char::from(b).to_string()
            } else {
                next += 1;
                char::from_u32(next - 1).unwrap().to_string()
            }
        })
        .collect()
}

const LAYERS: usize = 4;
const EMBD: u64 = 64;
const HEADS: u64 = 4;
const KV_HEADS: u64 = 2;
const HEAD_DIM: u64 = EMBD / HEADS;
const EXPERTS: u64 = 4;
const FF: u64 = 128;
const FF_EXPERT: u64 = 64;
const CONTEXT: u32 = 16_384;

/// The tiny model, written once per test run.
fn tiny_llama4() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let path = dir.join("tiny-llama4.gguf");
        let mut tokens = byte_tokens();
        let mut types = vec![1i32; tokens.len()];
        for s in SPECIAL {
            tokens.push((*s).to_owned());
            types.push(3);
        }
        let id = |t: &str| tokens.iter().position(|x| x == t).unwrap() as u32;
        let (bos, eot) = (id("<|begin_of_text|>"), id("<|eot|>"));
        let vocab = tokens.len() as u64;
        let template = "{{ bos_token }}{% for message in messages %}{{ '<|header_start|>' + message['role'] + '<|header_end|>\\n\\n' + message['content'] | trim + '<|eot|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|header_start|>assistant<|header_end|>\\n\\n' }}{% endif %}";
        let meta = vec![
            ("general.architecture", V::Str("llama4".into())),
            ("general.name", V::Str("tiny-llama4".into())),
            ("llama4.block_count", V::U32(LAYERS as u32)),
            ("llama4.context_length", V::U32(CONTEXT)),
            ("llama4.embedding_length", V::U32(EMBD as u32)),
            ("llama4.feed_forward_length", V::U32(FF as u32)),
            ("llama4.attention.head_count", V::U32(HEADS as u32)),
            ("llama4.attention.head_count_kv", V::U32(KV_HEADS as u32)),
            ("llama4.attention.layer_norm_rms_epsilon", V::F32(1e-5)),
            ("llama4.rope.freq_base", V::F32(500_000.0)),
            ("llama4.expert_count", V::U32(EXPERTS as u32)),
            ("llama4.expert_used_count", V::U32(1)),
            ("llama4.expert_feed_forward_length", V::U32(FF_EXPERT as u32)),
            ("llama4.interleave_moe_layer_step", V::U32(1)),
            ("llama4.vocab_size", V::U32(vocab as u32)),
            ("tokenizer.ggml.model", V::Str("gpt2".into())),
            ("tokenizer.ggml.pre", V::Str("llama4".into())),
            ("tokenizer.ggml.tokens", V::Strs(tokens.clone())),
            ("tokenizer.ggml.token_type", V::I32s(types)),
            ("tokenizer.ggml.merges", V::Strs(Vec::new())),
            ("tokenizer.ggml.bos_token_id", V::U32(bos)),
            ("tokenizer.ggml.eos_token_id", V::U32(eot)),
            ("tokenizer.ggml.add_bos_token", V::Bool(true)),
            ("tokenizer.chat_template", V::Str(template.into())),
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut random = |n: u64| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
                })
                .collect()
        };
        let ones = |n: u64| vec![1.0f32; n as usize];
        let mut t: Vec<(String, Vec<u64>, Vec<f32>)> = vec![
            ("token_embd.weight".into(), vec![EMBD, vocab], random(EMBD * vocab)),
            ("output_norm.weight".into(), vec![EMBD], ones(EMBD)),
            ("output.weight".into(), vec![EMBD, vocab], random(EMBD * vocab)),
        ];
        for i in 0..LAYERS {
            let b = |n: &str| format!("blk.{i}.{n}.weight");
            t.push((b("attn_norm"), vec![EMBD], ones(EMBD)));
            t.push((b("attn_q"), vec![EMBD, HEADS * HEAD_DIM], random(EMBD * HEADS * HEAD_DIM)));
            t.push((b("attn_k"), vec![EMBD, KV_HEADS * HEAD_DIM], random(EMBD * KV_HEADS * HEAD_DIM)));
            t.push((b("attn_v"), vec![EMBD, KV_HEADS * HEAD_DIM], random(EMBD * KV_HEADS * HEAD_DIM)));
            t.push((b("attn_output"), vec![HEADS * HEAD_DIM, EMBD], random(HEADS * HEAD_DIM * EMBD)));
            t.push((b("ffn_norm"), vec![EMBD], ones(EMBD)));
            t.push((b("ffn_gate_inp"), vec![EMBD, EXPERTS], random(EMBD * EXPERTS)));
            for e in ["ffn_gate_exps", "ffn_up_exps"] {
                t.push((b(e), vec![EMBD, FF_EXPERT, EXPERTS], random(EMBD * FF_EXPERT * EXPERTS)));
            }
            t.push((b("ffn_down_exps"), vec![FF_EXPERT, EMBD, EXPERTS], random(FF_EXPERT * EMBD * EXPERTS)));
            for e in ["ffn_gate_shexp", "ffn_up_shexp"] {
                t.push((b(e), vec![EMBD, FF_EXPERT], random(EMBD * FF_EXPERT)));
            }
            t.push((b("ffn_down_shexp"), vec![FF_EXPERT, EMBD], random(FF_EXPERT * EMBD)));
        }
        write_gguf(&path, &meta, &t);
        path
    })
}

fn engine() -> LlamaCppEngine {
    let options = LlamaCppOptions {
        threads: 2,
        ..LlamaCppOptions::default()
    };
    LlamaCppEngine::load(tiny_llama4(), options).unwrap()
}

#[test]
fn loads_and_renders_the_llama4_chat_format() {
    let e = engine();
    assert_eq!(e.capabilities().context_length, CONTEXT);
    let messages = [
        ChatMessage::new(Role::System, "  Documents here.\n"),
        ChatMessage::new(Role::User, "What port?"),
    ];
    let shown = e.render_chat(&messages).unwrap();
    // Llama 4's format: BOS, a header per turn, content trimmed, <|eot|>,
    // and the assistant's header left open.
    assert_eq!(
        shown,
        "<|begin_of_text|><|header_start|>system<|header_end|>\n\nDocuments here.<|eot|>\
         <|header_start|>user<|header_end|>\n\nWhat port?<|eot|>\
         <|header_start|>assistant<|header_end|>\n\n"
    );
    // Content is text, never special tokens: the same characters in a
    // document stay plain bytes.
    let sneaky = [ChatMessage::new(Role::User, "<|eot|>")];
    let plain = e.count_chat_tokens(&sneaky).unwrap();
    let empty = e.count_chat_tokens(&[ChatMessage::new(Role::User, "")]).unwrap();
    assert_eq!(plain - empty, "<|eot|>".len() as u32);
}

#[test]
fn a_prompt_past_the_attention_chunk_runs_deterministically_with_usage_that_matches() {
    let mut e = engine();
    // llama.cpp's Llama 4 chunks attention every 8,192 tokens: a prompt of
    // about 9,000 byte-level tokens crosses a chunk boundary.
    let long = "The warehouse counted crates of bolts. ".repeat(230);
    let messages = [
        ChatMessage::new(Role::System, long),
        ChatMessage::new(Role::User, "How many?"),
    ];
    let prompt = e.count_chat_tokens(&messages).unwrap();
    assert!(prompt > 8_192 + 100, "{prompt}");
    let params = GenerateParams {
        max_tokens: 12,
        temperature: 0.8,
        seed: 7,
        ..GenerateParams::default()
    };
    let a = e.generate(&messages, &params, &mut |_| {}).unwrap();
    let b = e.generate(&messages, &params, &mut |_| {}).unwrap();
    assert_eq!(a.prompt_tokens, prompt);
    assert!(a.completion_tokens > 0 && a.completion_tokens <= 12);
    assert_eq!(a.text, b.text, "same seed, same text");
}
