//! The Llama 4 Scout code path on a CPU, without Scout's weights: a tiny
//! random-weight Llama 4 written here as a GGUF with the real architecture
//! name, metadata keys, tensor names and special tokens (Scout's layout at
//! toy size: every layer a mixture of experts with a shared expert, top-1
//! routing, chunked attention with every 4th layer global and without
//! rotary embeddings), loaded by scout's llamacpp engine.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use scout::engine::llamacpp::{LlamaCppEngine, LlamaCppOptions};
use scout::engine::{ChatMessage, Engine, GenerateParams, Role, Tokenizer};

/// A GGUF metadata value.
enum V {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    Strs(Vec<String>),
    I32s(Vec<i32>),
    F32s(Vec<f32>),
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
            V::F32s(items) => {
                out.extend(9u32.to_le_bytes());
                out.extend(6u32.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for x in items {
                    out.extend(x.to_le_bytes());
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

/// Llama 4's chat format (Scout's template, less its tool and image parts).
const TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}{{ '<|header_start|>' + message['role'] + '<|header_end|>\\n\\n' + message['content'] | trim + '<|eot|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|header_start|>assistant<|header_end|>\\n\\n' }}{% endif %}";

/// Small random weights, the same on every run.
fn random_weights() -> impl FnMut(u64) -> Vec<f32> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    move |n: u64| -> Vec<f32> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
            })
            .collect()
    }
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
            ("tokenizer.chat_template", V::Str(TEMPLATE.into())),
        ];
        let mut random = random_weights();
        let ones = |n: u64| vec![1.0f32; n as usize];
        let mut t: Vec<(String, Vec<u64>, Vec<f32>)> = vec![
            ("token_embd.weight".into(), vec![EMBD, vocab], random(EMBD * vocab)),
            ("output_norm.weight".into(), vec![EMBD], ones(EMBD)),
            ("output.weight".into(), vec![EMBD, vocab], random(EMBD * vocab)),
        ];
        for i in 0..LAYERS {
            let b = |n: &str| format!("blk.{i}.{n}.weight");
            t.push((b("attn_norm"), vec![EMBD], ones(EMBD)));
            t.push((
                b("attn_q"),
                vec![EMBD, HEADS * HEAD_DIM],
                random(EMBD * HEADS * HEAD_DIM),
            ));
            t.push((
                b("attn_k"),
                vec![EMBD, KV_HEADS * HEAD_DIM],
                random(EMBD * KV_HEADS * HEAD_DIM),
            ));
            t.push((
                b("attn_v"),
                vec![EMBD, KV_HEADS * HEAD_DIM],
                random(EMBD * KV_HEADS * HEAD_DIM),
            ));
            t.push((
                b("attn_output"),
                vec![HEADS * HEAD_DIM, EMBD],
                random(HEADS * HEAD_DIM * EMBD),
            ));
            t.push((b("ffn_norm"), vec![EMBD], ones(EMBD)));
            t.push((b("ffn_gate_inp"), vec![EMBD, EXPERTS], random(EMBD * EXPERTS)));
            for e in ["ffn_gate_exps", "ffn_up_exps"] {
                t.push((b(e), vec![EMBD, FF_EXPERT, EXPERTS], random(EMBD * FF_EXPERT * EXPERTS)));
            }
            t.push((
                b("ffn_down_exps"),
                vec![FF_EXPERT, EMBD, EXPERTS],
                random(FF_EXPERT * EMBD * EXPERTS),
            ));
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

/// The tiny model's vision tower and projector, written as llama.cpp's
/// `mmproj` GGUF for Llama 4 (clip.cpp's `llama4` projector: Scout's
/// 336 px tiles of 14 px patches, a class token, 2D rotary positions, a
/// pixel shuffle of ratio 0.5 that makes 144 tokens of each tile, and the
/// adapter MLP and projection into the text model's width).
fn tiny_llama4_mmproj() -> &'static Path {
    const V_EMBD: u64 = 32;
    const V_HEADS: u32 = 2;
    const V_FF: u64 = 64;
    const V_LAYERS: usize = 1;
    const PATCH: u64 = 14;
    const TILE: u64 = 336;
    const POSITIONS: u64 = (TILE / PATCH) * (TILE / PATCH) + 1;
    const ADAPTER: u64 = 64;
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = tempfile::tempdir().unwrap().keep().join("tiny-llama4-mmproj.gguf");
        let meta = vec![
            ("general.architecture", V::Str("clip".into())),
            ("general.name", V::Str("tiny-llama4-mmproj".into())),
            ("clip.has_vision_encoder", V::Bool(true)),
            ("clip.projector_type", V::Str("llama4".into())),
            ("clip.use_gelu", V::Bool(true)),
            ("clip.vision.image_size", V::U32(TILE as u32)),
            ("clip.vision.patch_size", V::U32(PATCH as u32)),
            ("clip.vision.embedding_length", V::U32(V_EMBD as u32)),
            ("clip.vision.feed_forward_length", V::U32(V_FF as u32)),
            ("clip.vision.block_count", V::U32(V_LAYERS as u32)),
            ("clip.vision.projection_dim", V::U32(EMBD as u32)),
            ("clip.vision.attention.head_count", V::U32(V_HEADS)),
            ("clip.vision.attention.layer_norm_epsilon", V::F32(1e-5)),
            ("clip.vision.projector.scale_factor", V::U32(2)),
            ("clip.vision.image_mean", V::F32s(vec![0.5; 3])),
            ("clip.vision.image_std", V::F32s(vec![0.5; 3])),
        ];
        let mut random = random_weights();
        let ones = |n: u64| vec![1.0f32; n as usize];
        let zeros = |n: u64| vec![0.0f32; n as usize];
        let patch_in = PATCH * PATCH * 3;
        let mut t: Vec<(String, Vec<u64>, Vec<f32>)> = vec![
            (
                "v.patch_embd.weight".into(),
                vec![patch_in, V_EMBD],
                random(patch_in * V_EMBD),
            ),
            ("v.class_embd".into(), vec![V_EMBD], random(V_EMBD)),
            (
                "v.position_embd.weight".into(),
                vec![V_EMBD, POSITIONS],
                random(V_EMBD * POSITIONS),
            ),
            ("v.pre_ln.weight".into(), vec![V_EMBD], ones(V_EMBD)),
            ("v.pre_ln.bias".into(), vec![V_EMBD], zeros(V_EMBD)),
            ("v.post_ln.weight".into(), vec![V_EMBD], ones(V_EMBD)),
            ("v.post_ln.bias".into(), vec![V_EMBD], zeros(V_EMBD)),
        ];
        for i in 0..V_LAYERS {
            let b = |n: &str, kind: &str| format!("v.blk.{i}.{n}.{kind}");
            for n in ["attn_q", "attn_k", "attn_v", "attn_out"] {
                t.push((b(n, "weight"), vec![V_EMBD, V_EMBD], random(V_EMBD * V_EMBD)));
                t.push((b(n, "bias"), vec![V_EMBD], random(V_EMBD)));
            }
            for n in ["ln1", "ln2"] {
                t.push((b(n, "weight"), vec![V_EMBD], ones(V_EMBD)));
                t.push((b(n, "bias"), vec![V_EMBD], zeros(V_EMBD)));
            }
            t.push((b("ffn_up", "weight"), vec![V_EMBD, V_FF], random(V_EMBD * V_FF)));
            t.push((b("ffn_up", "bias"), vec![V_FF], random(V_FF)));
            t.push((b("ffn_down", "weight"), vec![V_FF, V_EMBD], random(V_FF * V_EMBD)));
            t.push((b("ffn_down", "bias"), vec![V_EMBD], random(V_EMBD)));
        }
        // The pixel shuffle puts 2 x 2 patches side by side: 4 x V_EMBD.
        t.push((
            "mm.model.mlp.1.weight".into(),
            vec![4 * V_EMBD, ADAPTER],
            random(4 * V_EMBD * ADAPTER),
        ));
        t.push((
            "mm.model.mlp.2.weight".into(),
            vec![ADAPTER, ADAPTER],
            random(ADAPTER * ADAPTER),
        ));
        t.push(("mm.model.fc.weight".into(), vec![ADAPTER, EMBD], random(ADAPTER * EMBD)));
        write_gguf(&path, &meta, &t);
        path
    })
}

fn vision_engine() -> LlamaCppEngine {
    let options = LlamaCppOptions {
        threads: 2,
        kv_host_bytes: 256 << 20,
        mmproj: Some(tiny_llama4_mmproj().to_path_buf()),
        ..LlamaCppOptions::default()
    };
    LlamaCppEngine::load(tiny_llama4(), options).unwrap()
}

/// A `width` x `height` PNG test card.
fn png(width: u32, height: u32) -> Vec<u8> {
    png_tinted(width, height, 90)
}

/// A test card with another blue level: the same size, other pixels.
fn png_tinted(width: u32, height: u32, blue: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, blue])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A system message with text, an image, and more text.
fn with_image(width: u32, height: u32, after: &str) -> Vec<ChatMessage> {
    conversation("Inventory photo follows.\n", png(width, height), (width, height), after)
}

/// A 672 x 336 shelf photo between text that holds special-token text,
/// and the same conversation without the photo.
fn shelf_with_and_without_image() -> (Vec<ChatMessage>, Vec<ChatMessage>) {
    let after = "\nThe shelf holds <|eot|> crates.\n";
    let messages = with_image(672, 336, after);
    let text_only = vec![
        ChatMessage::new(Role::System, format!("Inventory photo follows.\n{after}")),
        messages[1].clone(),
    ];
    (messages, text_only)
}

/// A system message of `before`, the image `bytes` (`size`) and `after`,
/// then the question.
fn conversation(before: &str, bytes: Vec<u8>, (width, height): (u32, u32), after: &str) -> Vec<ChatMessage> {
    let mut c = scout::prompt::Content::text(before);
    c.push_image(std::sync::Arc::new(scout::prompt::PromptImage {
        bytes,
        width,
        height,
        label: "shelf.png".into(),
    }));
    c.push_str(after);
    vec![
        c.into_message(Role::System),
        ChatMessage::new(Role::User, "How many crates are on the shelf?"),
    ]
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

#[test]
fn llamacpp_reads_an_image_through_the_projector_where_it_stands() {
    let mut e = vision_engine();
    assert!(e.capabilities().vision, "--mmproj: the engine reads images");
    assert!(engine().image_tokens(672, 336).is_none(), "without it, none");
    // As the projector counts it (llama.cpp's Llama 4 preprocessing, up
    // to 3 x 3 tiles): 672 x 336 is two 336 px tiles and the overview,
    // 144 tokens each after the pixel shuffle, between <|image_start|>
    // and <|image_end|>.
    assert_eq!(e.image_tokens(672, 336), Some(3 * 144 + 2));
    assert_eq!(e.image_tokens(200, 150), Some(144 + 2), "small: the overview alone");
    let (messages, text_only) = shelf_with_and_without_image();
    let prompt = e.count_chat_tokens(&messages).unwrap();
    // Document text stays text beside an image: no special tokens.
    assert_eq!(prompt, e.count_chat_tokens(&text_only).unwrap() + 434);
    let shown = e.render_chat(&messages).unwrap();
    assert!(
        shown.contains("follows.\n[image shelf.png: 434 tokens]\nThe shelf holds <|eot|> crates."),
        "{shown}"
    );
    let params = GenerateParams {
        max_tokens: 8,
        ..GenerateParams::default()
    };
    let a = e.generate(&messages, &params, &mut |_| {}).unwrap();
    assert_eq!(a.prompt_tokens, prompt, "{a:?}");
    assert!(a.completion_tokens > 0, "{a:?}");
    assert_eq!(a.kv.prefilled_tokens, prompt, "{a:?}");
    // The same image again: its KV (image and all) comes from memory, and
    // the answer is the one read from scratch.
    let b = e.generate(&messages, &params, &mut |_| {}).unwrap();
    assert!(b.kv.reused_tokens > 434, "{b:?}");
    assert_eq!(a.text, b.text, "greedy, same text");
    // Another image of the same size is another prefix: nothing reused.
    let other = conversation(
        "Inventory photo follows.\n",
        png_tinted(672, 336, 200),
        (672, 336),
        "\nThe shelf holds <|eot|> crates.\n",
    );
    let c = e.generate(&other, &params, &mut |_| {}).unwrap();
    assert_eq!((c.kv.reused_tokens, c.prompt_tokens), (0, prompt), "{c:?}");
    // Forked questions over the image answer as each does alone.
    let second = vec![
        messages[0].clone(),
        ChatMessage::new(Role::User, "What colour is the shelf?"),
    ];
    let alone = e.generate(&second, &params, &mut |_| {}).unwrap();
    let forked = e
        .generate_forked(&[messages.clone(), second], &params, &mut |_, _| {})
        .unwrap();
    assert_eq!(forked[0].text, a.text);
    assert_eq!(forked[1].text, alone.text);
    // The prefix, image and all, was read once and forked.
    assert!(forked[1].kv.forked_tokens > 434, "{forked:?}");
    assert_eq!(forked[0].kv.prefilled_tokens, prompt, "{forked:?}");
}

#[test]
fn kv_reused_up_to_the_middle_of_an_image_is_cut_back_to_its_start() {
    // About 450 tokens of text, then the image: the first 512-token block
    // ends inside the image.
    let before = format!("{}\n", "Crates: ".repeat(56));
    let first = conversation(&before, png(672, 336), (672, 336), "\nFirst shelf.\n");
    let second = conversation(&before, png(672, 336), (672, 336), "\nSecond shelf.\n");
    let params = GenerateParams {
        max_tokens: 8,
        ..GenerateParams::default()
    };
    let mut e = vision_engine();
    e.generate(&first, &params, &mut |_| {}).unwrap();
    // The second prompt shares the first block with the first one's KV
    // in memory; the block ends inside the image, so the reuse stops
    // where the image starts and the image is read whole.
    let g = e.generate(&second, &params, &mut |_| {}).unwrap();
    let fresh = vision_engine().generate(&second, &params, &mut |_| {}).unwrap();
    assert!(g.kv.reused_tokens > 400 && g.kv.reused_tokens < 512, "{g:?}");
    assert_eq!(g.kv.reused_tokens + g.kv.prefilled_tokens, g.prompt_tokens, "{g:?}");
    assert_eq!(g.text, fresh.text);
}

/// `scout ask --json` about the shelf over `dir` on a tiny Llama 4 (the
/// engine and model in `model_args`), with scout's caches in `cache`.
fn ask_about_the_shelf(dir: &Path, cache: &Path, model_args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let out = crate::util::scout(cache)
        .arg("ask")
        .arg(dir)
        .args(["How many crates are on the shelf?", "--json", "-q", "--no-ocr"])
        .args(["--max-tokens", "8"])
        .args(model_args)
        .output()
        .unwrap();
    // Random weights cite nothing: answered (0) or not backed (1).
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        crate::util::text(&out.stderr)
    );
    let r = crate::util::json(&out);
    // One window: one call, and a second when the answer cites none of the
    // lines that match the question (random weights cite nothing).
    let rechecked = u64::from(r.get("recheck").is_some());
    assert_eq!(r["usage"]["calls"].as_u64(), Some(1 + rechecked), "{r}");
    r
}

/// Prompt tokens of the corpus's one window (documents, boundaries, table
/// of contents): what an image adds to, whatever the calls were.
fn window_tokens(r: &serde_json::Value) -> u64 {
    assert_eq!(r["windows"].as_array().map(Vec::len), Some(1), "{r}");
    r["windows"][0]["tokens"].as_u64().unwrap()
}

/// The same on the tiny Llama 4 GGUF with its projector.
fn ask_with_mmproj(dir: &Path, cache: &Path) -> serde_json::Value {
    let args = [
        "--model".as_ref(),
        tiny_llama4().as_os_str(),
        "--mmproj".as_ref(),
        tiny_llama4_mmproj().as_os_str(),
    ];
    ask_about_the_shelf(dir, cache, &args)
}

#[test]
fn scout_ask_with_mmproj_reads_a_corpus_image_where_it_stands() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "The shelf holds twelve crates.\n").unwrap();
    let without = window_tokens(&ask_with_mmproj(dir.path(), tempfile::tempdir().unwrap().path()));
    std::fs::write(dir.path().join("shelf.png"), png(672, 336)).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let first = ask_with_mmproj(dir.path(), cache.path());
    let with = window_tokens(&first);
    // The next process restores the prefix, image and all, from disk.
    let again = ask_with_mmproj(dir.path(), cache.path());
    assert_eq!(first["kv"]["restored_tokens"], 0, "{first}");
    assert!(again["kv"]["restored_tokens"].as_u64().unwrap() > 434, "{again}");
    assert_eq!(again["answer"], first["answer"]);
    // The image's 434 tokens, and its document's header, line and
    // table-of-contents entry (about 200 bytes: a token each here).
    let extra = with - without;
    assert!((434..434 + 300).contains(&extra), "{without} -> {with}");
}

/// The same code path through the mistralrs engine: a tiny random-weight
/// Llama 4 written as a Hugging Face folder (config.json with Scout's keys,
/// tokenizer.json with Llama 4's special tokens, safetensors with Scout's
/// tensor names, text and vision tower), loaded by mistral.rs.
#[cfg(feature = "mistralrs")]
mod mistralrs {
    use super::*;
    use scout::engine::mistralrs::{Isq, MistralRsEngine, MistralRsOptions};
    use scout::engine::StopReason;

    /// Writes a safetensors file of F32 tensors (shapes outermost first).
    fn write_safetensors(path: &Path, tensors: &[(String, Vec<u64>, Vec<f32>)]) {
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
        let mut offset = 0usize;
        for (name, shape, data) in tensors {
            assert_eq!(shape.iter().product::<u64>() as usize, data.len(), "{name}");
            let end = offset + data.len() * 4;
            header.insert(
                name.clone(),
                serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
            );
            offset = end;
        }
        let mut head = serde_json::Value::Object(header).to_string().into_bytes();
        head.resize(head.len().div_ceil(8) * 8, b' ');
        let mut out = (head.len() as u64).to_le_bytes().to_vec();
        out.extend(head);
        for (_, _, data) in tensors {
            for x in data {
                out.extend(x.to_le_bytes());
            }
        }
        std::fs::write(path, out).unwrap();
    }

    /// Text tower: Scout's layout at toy size.
    const HIDDEN: u64 = 64;
    const INTER: u64 = 64;
    const INTER_MLP: u64 = 128;
    /// Small enough that the tests' prompts cross chunks.
    const CHUNK: u32 = 256;
    /// Vision tower: Scout's 336 px tiles of 14 px patches; the pixel
    /// shuffle (ratio 0.5) makes 144 tokens of each tile's 576 patches.
    const V_HIDDEN: u64 = 32;
    const V_INTER: u64 = 128;
    const V_OUT: u64 = 64;
    const PATCHES: u64 = (336 / 14) * (336 / 14) + 1;

    fn tiny_llama4_folder() -> &'static Path {
        static PATH: OnceLock<PathBuf> = OnceLock::new();
        PATH.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap().keep().join("tiny-llama4");
            std::fs::create_dir_all(&dir).unwrap();
            let bytes = byte_tokens();
            let mut vocab = serde_json::Map::new();
            for (i, t) in bytes.iter().enumerate() {
                vocab.insert(t.clone(), i.into());
            }
            let added: Vec<serde_json::Value> = SPECIAL
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    serde_json::json!({"id": bytes.len() + i, "content": s, "single_word": false,
                        "lstrip": false, "rstrip": false, "normalized": false, "special": true})
                })
                .collect();
            let id = |t: &str| bytes.len() + SPECIAL.iter().position(|s| *s == t).unwrap();
            let n_vocab = (bytes.len() + SPECIAL.len()) as u64;
            let byte_level = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false,
                "trim_offsets": true, "use_regex": true});
            let tokenizer = serde_json::json!({
                "version": "1.0", "truncation": null, "padding": null,
                "added_tokens": added, "normalizer": null,
                "pre_tokenizer": byte_level, "post_processor": null, "decoder": byte_level,
                "model": {"type": "BPE", "dropout": null, "unk_token": null,
                    "continuing_subword_prefix": null, "end_of_word_suffix": null,
                    "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                    "vocab": vocab, "merges": []}
            });
            let write = |name: &str, v: &serde_json::Value| std::fs::write(dir.join(name), v.to_string()).unwrap();
            write("tokenizer.json", &tokenizer);
            // Scout's tokenizer ends text with <|end_of_text|> and turns
            // with <|eot|>.
            write(
                "tokenizer_config.json",
                &serde_json::json!({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>",
                    "chat_template": TEMPLATE, "model_max_length": 10_485_760}),
            );
            write(
                "generation_config.json",
                &serde_json::json!({"bos_token_id": id("<|begin_of_text|>"),
                    "eos_token_id": [id("<|end_of_text|>"), id("<|eom|>"), id("<|eot|>")]}),
            );
            write(
                "config.json",
                &serde_json::json!({
                    "architectures": ["Llama4ForConditionalGeneration"],
                    "model_type": "llama4",
                    "image_token_index": id("<|image|>"),
                    "boi_token_index": id("<|image_start|>"),
                    "eoi_token_index": id("<|image_end|>"),
                    "text_config": {
                        "model_type": "llama4_text", "hidden_act": "silu",
                        "hidden_size": HIDDEN, "intermediate_size": INTER,
                        "intermediate_size_mlp": INTER_MLP, "vocab_size": n_vocab,
                        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
                        "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM,
                        "rms_norm_eps": 1e-5, "rope_theta": 500_000.0,
                        // Scout's: what mistral.rs would size its RoPE tables by.
                        "max_position_embeddings": 10_485_760,
                        "rope_scaling": {"factor": 16.0, "high_freq_factor": 1.0, "low_freq_factor": 1.0,
                            "original_max_position_embeddings": 8192, "rope_type": "llama3"},
                        "tie_word_embeddings": false, "use_qk_norm": true,
                        "interleave_moe_layer_step": 1, "num_local_experts": EXPERTS,
                        "num_experts_per_tok": 1, "attention_chunk_size": CHUNK,
                        "attn_temperature_tuning": 4, "floor_scale": 8192, "attn_scale": 0.1,
                        "bos_token_id": id("<|begin_of_text|>"),
                        "eos_token_id": [id("<|end_of_text|>"), id("<|eom|>"), id("<|eot|>")]
                    },
                    "vision_config": {
                        "hidden_size": V_HIDDEN, "hidden_act": "gelu", "num_hidden_layers": 1,
                        "num_attention_heads": 2, "num_channels": 3, "intermediate_size": V_INTER,
                        "vision_output_dim": V_OUT, "image_size": 336, "patch_size": 14,
                        "norm_eps": 1e-5, "pixel_shuffle_ratio": 0.5,
                        "projector_input_dim": V_OUT, "projector_output_dim": V_OUT,
                        "vision_feature_layer": -1, "rope_theta": 10_000.0
                    }
                }),
            );
            write(
                "preprocessor_config.json",
                &serde_json::json!({"do_convert_rgb": true, "do_normalize": true, "do_rescale": true,
                    "do_resize": true, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
                    "max_patches": 16, "resample": 2, "rescale_factor": 1.0 / 255.0,
                    "size": {"height": 336, "width": 336},
                    "image_processor_type": "Llama4ImageProcessorFast"}),
            );
            write(
                "processor_config.json",
                &serde_json::json!({"fake_image_token": "<|image|>", "image_token": "<|image|>",
                    "patch_size": 14, "processor_class": "Llama4Processor"}),
            );
            let mut random = random_weights();
            let ones = |n: u64| vec![1.0f32; n as usize];
            let zeros = |n: u64| vec![0.0f32; n as usize];
            let mut t: Vec<(String, Vec<u64>, Vec<f32>)> = Vec::new();
            let lm = "language_model.model";
            t.push((
                format!("{lm}.embed_tokens.weight"),
                vec![n_vocab, HIDDEN],
                random(n_vocab * HIDDEN),
            ));
            t.push((format!("{lm}.norm.weight"), vec![HIDDEN], ones(HIDDEN)));
            t.push((
                "language_model.lm_head.weight".into(),
                vec![n_vocab, HIDDEN],
                random(n_vocab * HIDDEN),
            ));
            let (q, kv) = (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM);
            for i in 0..LAYERS {
                let l = |n: &str| format!("{lm}.layers.{i}.{n}");
                t.push((l("input_layernorm.weight"), vec![HIDDEN], ones(HIDDEN)));
                t.push((l("post_attention_layernorm.weight"), vec![HIDDEN], ones(HIDDEN)));
                t.push((l("self_attn.q_proj.weight"), vec![q, HIDDEN], random(q * HIDDEN)));
                t.push((l("self_attn.k_proj.weight"), vec![kv, HIDDEN], random(kv * HIDDEN)));
                t.push((l("self_attn.v_proj.weight"), vec![kv, HIDDEN], random(kv * HIDDEN)));
                t.push((l("self_attn.o_proj.weight"), vec![HIDDEN, q], random(HIDDEN * q)));
                t.push((
                    l("feed_forward.router.weight"),
                    vec![EXPERTS, HIDDEN],
                    random(EXPERTS * HIDDEN),
                ));
                t.push((
                    l("feed_forward.experts.gate_up_proj"),
                    vec![EXPERTS, HIDDEN, 2 * INTER],
                    random(EXPERTS * HIDDEN * 2 * INTER),
                ));
                t.push((
                    l("feed_forward.experts.down_proj"),
                    vec![EXPERTS, INTER, HIDDEN],
                    random(EXPERTS * INTER * HIDDEN),
                ));
                for p in ["gate_proj", "up_proj"] {
                    t.push((
                        l(&format!("feed_forward.shared_expert.{p}.weight")),
                        vec![INTER, HIDDEN],
                        random(INTER * HIDDEN),
                    ));
                }
                t.push((
                    l("feed_forward.shared_expert.down_proj.weight"),
                    vec![HIDDEN, INTER],
                    random(HIDDEN * INTER),
                ));
            }
            let v = "vision_model";
            t.push((
                format!("{v}.patch_embedding.linear.weight"),
                vec![V_HIDDEN, 3 * 14 * 14],
                random(V_HIDDEN * 3 * 14 * 14),
            ));
            t.push((format!("{v}.class_embedding"), vec![V_HIDDEN], random(V_HIDDEN)));
            t.push((
                format!("{v}.positional_embedding_vlm"),
                vec![PATCHES, V_HIDDEN],
                random(PATCHES * V_HIDDEN),
            ));
            let norm = |t: &mut Vec<(String, Vec<u64>, Vec<f32>)>, name: String| {
                t.push((format!("{name}.weight"), vec![V_HIDDEN], ones(V_HIDDEN)));
                t.push((format!("{name}.bias"), vec![V_HIDDEN], zeros(V_HIDDEN)));
            };
            norm(&mut t, format!("{v}.layernorm_pre"));
            norm(&mut t, format!("{v}.layernorm_post"));
            norm(&mut t, format!("{v}.model.layers.0.input_layernorm"));
            norm(&mut t, format!("{v}.model.layers.0.post_attention_layernorm"));
            for p in ["q_proj", "k_proj", "v_proj", "o_proj"] {
                let name = format!("{v}.model.layers.0.self_attn.{p}");
                t.push((
                    format!("{name}.weight"),
                    vec![V_HIDDEN, V_HIDDEN],
                    random(V_HIDDEN * V_HIDDEN),
                ));
                t.push((format!("{name}.bias"), vec![V_HIDDEN], zeros(V_HIDDEN)));
            }
            let mlp = format!("{v}.model.layers.0.mlp");
            t.push((
                format!("{mlp}.fc1.weight"),
                vec![V_INTER, V_HIDDEN],
                random(V_INTER * V_HIDDEN),
            ));
            t.push((format!("{mlp}.fc1.bias"), vec![V_INTER], zeros(V_INTER)));
            t.push((
                format!("{mlp}.fc2.weight"),
                vec![V_HIDDEN, V_INTER],
                random(V_HIDDEN * V_INTER),
            ));
            t.push((format!("{mlp}.fc2.bias"), vec![V_HIDDEN], zeros(V_HIDDEN)));
            t.push((
                format!("{v}.vision_adapter.mlp.fc1.weight"),
                vec![V_OUT, V_INTER],
                random(V_OUT * V_INTER),
            ));
            t.push((
                format!("{v}.vision_adapter.mlp.fc2.weight"),
                vec![V_OUT, V_OUT],
                random(V_OUT * V_OUT),
            ));
            t.push((
                "multi_modal_projector.linear_1.weight".into(),
                vec![HIDDEN, V_OUT],
                random(HIDDEN * V_OUT),
            ));
            write_safetensors(&dir.join("model.safetensors"), &t);
            dir
        })
    }

    fn options(context: Option<u32>, past_attention_chunk: bool) -> MistralRsOptions {
        MistralRsOptions {
            isq: Isq::None,
            context,
            past_attention_chunk,
            scratch: tempfile::tempdir().unwrap().keep(),
        }
    }

    #[test]
    fn mistralrs_loads_it_renders_llama4s_format_and_caps_the_context_at_the_chunk() {
        let opts = options(None, false);
        let e = MistralRsEngine::load(tiny_llama4_folder(), &opts).unwrap();
        // Finding 2: decoding past the chunk departs from the reference
        // model in mistral.rs, so the context stops at it.
        assert_eq!(e.capabilities().context_length, CHUNK);
        assert!(!e.capabilities().kv_operations);
        // Finding 3: mistral.rs loaded a config that says the planned
        // context, not Scout's 10,485,760 positions.
        let configs: Vec<serde_json::Value> = std::fs::read_dir(&opts.scratch)
            .unwrap()
            .map(|d| {
                serde_json::from_str(&std::fs::read_to_string(d.unwrap().path().join("config.json")).unwrap()).unwrap()
            })
            .collect();
        assert_eq!(configs.len(), 1);
        assert_eq!(configs[0]["text_config"]["max_position_embeddings"], CHUNK);
        assert_eq!(
            e.loaded_max_sequence_length(),
            Some(CHUNK as usize),
            "and mistral.rs read that copy, not the folder's own config"
        );
        let messages = [
            ChatMessage::new(Role::System, "  Documents here.\n"),
            ChatMessage::new(Role::User, "What port?"),
        ];
        assert_eq!(
            e.render_chat(&messages).unwrap(),
            "<|begin_of_text|><|header_start|>system<|header_end|>\n\nDocuments here.<|eot|>\
             <|header_start|>user<|header_end|>\n\nWhat port?<|eot|>\
             <|header_start|>assistant<|header_end|>\n\n"
        );
        // Document text is never parsed for special tokens.
        let sneaky = e.count_chat_tokens(&[ChatMessage::new(Role::User, "<|eot|>")]).unwrap();
        let empty = e.count_chat_tokens(&[ChatMessage::new(Role::User, "")]).unwrap();
        assert_eq!(sneaky - empty, "<|eot|>".len() as u32);
    }

    #[test]
    fn mistralrs_runs_a_prompt_past_the_chunk_deterministically_with_exact_usage() {
        let mut e = MistralRsEngine::load(tiny_llama4_folder(), &options(Some(2048), true)).unwrap();
        assert_eq!(e.capabilities().context_length, 2048);
        let messages = [
            ChatMessage::new(Role::System, "The warehouse counted crates of bolts. ".repeat(20)),
            ChatMessage::new(Role::User, "How many?"),
        ];
        let prompt = e.count_chat_tokens(&messages).unwrap();
        assert!(prompt > 2 * CHUNK, "{prompt}");
        let params = GenerateParams {
            max_tokens: 12,
            ..GenerateParams::default()
        };
        let mut streamed = String::new();
        let a = e
            .generate(&messages, &params, &mut |ev| {
                if let scout::engine::EngineEvent::Text(t) = ev {
                    streamed.push_str(t);
                }
            })
            .unwrap();
        let b = e.generate(&messages, &params, &mut |_| {}).unwrap();
        assert_eq!(a.prompt_tokens, prompt, "usage counts the prompt scout tokenized");
        assert_eq!(a.kv.prefilled_tokens, prompt, "no prefix cache: every token prefilled");
        assert!(a.completion_tokens > 0 && a.completion_tokens <= 12, "{a:?}");
        assert_eq!(a.text, streamed, "the stream is the answer");
        assert_eq!(a.text, b.text, "greedy, same text");
    }

    #[test]
    fn mistralrs_reads_an_image_where_it_stands_at_llama4s_tile_cost() {
        let mut e = MistralRsEngine::load(tiny_llama4_folder(), &options(Some(2048), true)).unwrap();
        assert!(
            e.capabilities().vision,
            "a Llama 4 folder with its vision tower reads images"
        );
        assert!(e.description().contains("reads images"), "{}", e.description());
        // 672 x 336: two tiles side by side (2 x 144 patches, an x and a y
        // separator) and the global tile (144), between start, <|image|>
        // and end: 437 tokens, past the 256-token attention chunk.
        let tiling = scout::model::vision::llama4_tiling(672, 336);
        assert_eq!((tiling.rows, tiling.cols, tiling.tokens), (1, 2, 437));
        assert_eq!(e.image_tokens(672, 336), Some(437));
        let (messages, text_only) = shelf_with_and_without_image();
        let prompt = e.count_chat_tokens(&messages).unwrap();
        // The image costs its tiles. mistral.rs reads a prompt with images
        // as text, special tokens parsed, so the document's "<|eot|>" gets
        // a word joiner after its "<" (3 bytes: 3 tokens for this
        // tokenizer, which has no merges).
        let text = e.count_chat_tokens(&text_only).unwrap();
        assert_eq!(prompt, text + 437 + 3);
        let rendered = e.render_chat(&messages).unwrap();
        assert!(rendered.contains("holds <\u{2060}|eot|> crates"), "{rendered:.400}");
        assert_eq!(rendered.matches("<|patch|>").count(), 3 * 144, "{rendered:.400}");
        assert_eq!(rendered.matches("<|tile_x_separator|>").count(), 1);
        assert_eq!(rendered.matches("<|tile_y_separator|>").count(), 1);
        let params = GenerateParams {
            max_tokens: 8,
            ..GenerateParams::default()
        };
        let a = e.generate(&messages, &params, &mut |_| {}).unwrap();
        // What mistral.rs says it read, once it wrote the image out as its
        // tiles, is what scout counted: the placeholders expanded to
        // exactly Llama 4's tiling.
        assert_eq!(a.prompt_tokens, prompt, "{a:?}");
        assert!(a.completion_tokens > 0, "{a:?}");
        let b = e.generate(&messages, &params, &mut |_| {}).unwrap();
        assert_eq!(a.text, b.text, "greedy, same text");
        // One tile plus the global tile for a small image.
        let small = with_image(200, 150, "\nThat is all.\n");
        let g = e.generate(&small, &params, &mut |_| {}).unwrap();
        assert_eq!(g.prompt_tokens, e.count_chat_tokens(&small).unwrap(), "{g:?}");
    }

    /// `scout ask` over `dir` on the tiny Llama 4: the prompt tokens
    /// mistral.rs read.
    fn ask_window_tokens(dir: &Path) -> u64 {
        let cache = tempfile::tempdir().unwrap();
        let flags = [
            "--engine",
            "mistralrs",
            "--isq",
            "none",
            "--context",
            "2048",
            "--past-attention-chunk",
        ];
        let mut args: Vec<&std::ffi::OsStr> = flags.iter().map(std::ffi::OsStr::new).collect();
        args.extend(["--model".as_ref(), tiny_llama4_folder().as_os_str()]);
        window_tokens(&ask_about_the_shelf(dir, cache.path(), &args))
    }

    #[test]
    fn scout_ask_shows_the_tiny_llama4_a_corpus_image_where_it_stands() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "The shelf holds twelve crates.\n").unwrap();
        let without = ask_window_tokens(dir.path());
        std::fs::write(dir.path().join("shelf.png"), png(672, 336)).unwrap();
        let with = ask_window_tokens(dir.path());
        // The image's 437 tokens (two tiles and the global one), and its
        // document's header, line and table-of-contents entry (about 200
        // bytes: a token each with this tokenizer).
        let extra = with - without;
        assert!((437..437 + 300).contains(&extra), "{without} -> {with}");
    }

    #[test]
    fn a_damaged_tokenizer_config_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(tiny_llama4_folder()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
        std::fs::write(dir.path().join("tokenizer_config.json"), "{\"chat_template\": ").unwrap();
        let err = MistralRsEngine::load(dir.path(), &options(None, false))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tokenizer_config.json") && err.contains("not valid JSON"),
            "{err}"
        );
    }

    #[test]
    fn mistralrs_quantizes_the_weights_while_loading() {
        let mut opts = options(None, false);
        opts.isq = Isq::Q8_0;
        let mut e = MistralRsEngine::load(tiny_llama4_folder(), &opts).unwrap();
        let messages = [ChatMessage::new(Role::User, "How many crates?")];
        let params = GenerateParams {
            max_tokens: 8,
            ..GenerateParams::default()
        };
        let a = e.generate(&messages, &params, &mut |_| {}).unwrap();
        let b = e.generate(&messages, &params, &mut |_| {}).unwrap();
        assert!(a.completion_tokens > 0, "{a:?}");
        assert_eq!(a.text, b.text);
    }

    #[test]
    fn mistralrs_ends_a_schema_constrained_answer_at_the_object() {
        let mut e = MistralRsEngine::load(tiny_llama4_folder(), &options(None, false)).unwrap();
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"port": {"enum": ["80", "443"]}},
            "required": ["port"],
            "additionalProperties": false
        });
        let params = GenerateParams {
            max_tokens: 60,
            json_schema: Some(schema),
            ..GenerateParams::default()
        };
        let messages = [ChatMessage::new(Role::User, "Which port? Answer in JSON.")];
        let g = e.generate(&messages, &params, &mut |_| {}).unwrap();
        // mistral.rs's grammar allows any whitespace between JSON tokens by
        // default, and random weights wander into blank lines until the
        // limit; scout asks for JSON on one line, so the object ends.
        let v: serde_json::Value = serde_json::from_str(g.text.trim()).unwrap_or_else(|e| panic!("{e}: {:?}", g.text));
        assert!(v["port"] == "80" || v["port"] == "443", "{v}");
        assert_eq!(g.stop, StopReason::EndOfText, "{g:?}");
        assert!(g.completion_tokens < 60, "{g:?}");
    }

    #[test]
    fn mistralrs_reports_an_unknown_gguf_architecture_as_an_error() {
        // Finding 6: mistral.rs's GGUF loader panics on an architecture it
        // does not know (gemma3); scout turns that into a load error.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny-gemma3.gguf");
        write_gguf(
            &path,
            &[
                ("general.architecture", V::Str("gemma3".into())),
                ("gemma3.context_length", V::U32(2048)),
            ],
            &[("token_embd.weight".into(), vec![8, 4], vec![0.0; 32])],
        );
        let err = MistralRsEngine::load(&path, &options(None, false))
            .unwrap_err()
            .to_string();
        assert!(err.contains("mistral.rs") && err.contains("gemma3"), "{err}");
    }
}

/// Writes the tiny Llama 4 to `$SCOUT_TINY_LLAMA4_OUT`, for
/// `scripts/gpu-check --prepare` (a GPU machine has no Rust to write it).
#[test]
#[ignore = "writes a file for scripts/gpu-check; run with --ignored"]
fn write_the_tiny_llama4_for_the_gpu_check() {
    let out = std::env::var_os("SCOUT_TINY_LLAMA4_OUT").expect("set SCOUT_TINY_LLAMA4_OUT to the file to write");
    std::fs::copy(tiny_llama4(), out).unwrap();
}
