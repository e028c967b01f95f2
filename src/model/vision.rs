//! Vision token rules: how many prompt tokens an image costs a model, and
//! the text its processor puts in place of an image. Llama 4's tiling is
//! the one written out here; engines, the prompt's counts and the corpus's
//! image token totals all use it.
//!
//! In: an image's upright size. Out: a tiling and its token count.
//! Never: decodes an image (see `ingest::image` for that).

use serde::Serialize;

/// Llama 4's vision tiles: 336 px squares, at most 16 of them, 144 tokens
/// each after pixel shuffle.
pub const LLAMA4_TILE_PX: u32 = 336;
pub const LLAMA4_MAX_TILES: u32 = 16;
pub const LLAMA4_TOKENS_PER_TILE: u32 = 144;

/// How Llama 4 would tile an image, and the prompt tokens that costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Llama4Tiling {
    pub rows: u32,
    pub cols: u32,
    pub tokens: u32,
}

/// The canvas Llama 4's image processor picks (its `get_best_fit`): among
/// every rows x cols grid of at most 16 tiles, the smallest upscale that
/// fits the image, or failing any, the largest downscale; ties go to the
/// smallest canvas. The prompt then holds, between `<|image_start|>` and
/// `<|image_end|>`: 144 patch tokens per tile with a separator after each
/// tile but the last of a row and one per row (only when there is more
/// than one tile), then `<|image|>` and 144 tokens of the global tile.
#[must_use]
pub fn llama4_tiling(width: u32, height: u32) -> Llama4Tiling {
    let (w, h) = (f64::from(width.max(1)), f64::from(height.max(1)));
    let tile = f64::from(LLAMA4_TILE_PX);
    let mut grids: Vec<(u32, u32, f64)> = Vec::new();
    for rows in 1..=LLAMA4_MAX_TILES {
        for cols in 1..=LLAMA4_MAX_TILES / rows {
            let scale = (f64::from(rows) * tile / h).min(f64::from(cols) * tile / w);
            grids.push((rows, cols, scale));
        }
    }
    let up = grids
        .iter()
        .filter(|g| g.2 >= 1.0)
        .map(|g| g.2)
        .fold(f64::INFINITY, f64::min);
    let chosen = if up.is_finite() {
        up
    } else {
        grids.iter().map(|g| g.2).fold(0.0, f64::max)
    };
    let (rows, cols, _) = grids
        .iter()
        .filter(|g| (g.2 - chosen).abs() < 1e-12)
        .min_by_key(|g| g.0 * g.1)
        .copied()
        .expect("the chosen scale comes from a grid");
    let n_tiles = rows * cols;
    let tile_tokens = if n_tiles > 1 {
        n_tiles * LLAMA4_TOKENS_PER_TILE + rows * (cols - 1) + rows
    } else {
        0
    };
    Llama4Tiling {
        rows,
        cols,
        tokens: 1 + tile_tokens + 1 + LLAMA4_TOKENS_PER_TILE + 1,
    }
}

/// What Llama 4's processor puts in a prompt in place of `<|image|>` for
/// an image of this upright size, written out as its special tokens
/// (exactly [`llama4_tiling`]`.tokens` of them).
#[must_use]
pub fn llama4_image_text(width: u32, height: u32) -> String {
    let tiling = llama4_tiling(width, height);
    let patches = "<|patch|>".repeat(LLAMA4_TOKENS_PER_TILE as usize);
    let mut s = String::from("<|image_start|>");
    if tiling.rows * tiling.cols > 1 {
        for _ in 0..tiling.rows {
            for col in 0..tiling.cols {
                s.push_str(&patches);
                if col + 1 < tiling.cols {
                    s.push_str("<|tile_x_separator|>");
                }
            }
            s.push_str("<|tile_y_separator|>");
        }
    }
    s.push_str("<|image|>");
    s.push_str(&patches);
    s.push_str("<|image_end|>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama4_tiling_matches_the_reference_rule() {
        // One tile: start, <|image|>, 144 patches, end.
        assert_eq!(
            llama4_tiling(336, 336),
            Llama4Tiling {
                rows: 1,
                cols: 1,
                tokens: 147
            }
        );
        assert_eq!(
            llama4_tiling(100, 80),
            Llama4Tiling {
                rows: 1,
                cols: 1,
                tokens: 147
            }
        );
        // 672 wide, 336 high: 1 x 2 tiles, 288 patches, 1 x-separator,
        // 1 y-separator, and the global tile.
        assert_eq!(
            llama4_tiling(672, 336),
            Llama4Tiling {
                rows: 1,
                cols: 2,
                tokens: 1 + 288 + 1 + 1 + 1 + 144 + 1
            }
        );
        // 4000 x 3000 must shrink; 3 x 4, 4 x 4 and 3 x 5 all scale by
        // 0.336, and 3 x 4 is the smallest canvas: 12 tiles, 9 x-separators,
        // 3 y-separators.
        assert_eq!(
            llama4_tiling(4000, 3000),
            Llama4Tiling {
                rows: 3,
                cols: 4,
                tokens: 1 + 12 * 144 + 9 + 3 + 1 + 144 + 1
            }
        );
        // A tall page scan: 850 x 1100 upscales least onto 4 rows x 3 cols.
        assert_eq!(llama4_tiling(850, 1100).rows * llama4_tiling(850, 1100).cols, 12);
        // Written out, the same number of tokens, in the processor's order.
        for (w, h) in [(336, 336), (672, 336), (4000, 3000), (850, 1100)] {
            let text = llama4_image_text(w, h);
            assert_eq!(text.matches("<|").count() as u32, llama4_tiling(w, h).tokens, "{w}x{h}");
            assert_eq!(text.matches("<|tile_y_separator|>").count() as u32, {
                let t = llama4_tiling(w, h);
                if t.rows * t.cols > 1 {
                    t.rows
                } else {
                    0
                }
            });
        }
        assert!(llama4_image_text(672, 336).starts_with("<|image_start|><|patch|>"));
        assert!(llama4_image_text(336, 336).ends_with("<|patch|><|image_end|>"));
    }
}
