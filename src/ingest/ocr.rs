//! OCR: text and word boxes from page images, with tesseract.
//!
//! In: image bytes. Out: lines (text, bounding box, mean word confidence)
//! grouped into blocks, from tesseract's TSV output. tesseract runs as a
//! child process on one thread, under a time limit, and is killed past it.
//! When tesseract is not installed, OCR is reported unavailable and the
//! image is kept without text (counted, never dropped).

use std::process::Command;
use std::time::Duration;

use super::child::{self, ChildError};

pub use crate::document::OcrLine;

/// Why OCR gave no text for an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OcrFailure {
    /// tesseract is not installed (or not on PATH).
    Unavailable(String),
    /// It ran past its time limit and was killed.
    Timeout,
    /// It exited with an error (unreadable image, unknown language).
    Failed(String),
}

impl OcrFailure {
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            OcrFailure::Unavailable(_) => "ocr_unavailable",
            OcrFailure::Timeout => "ocr_timeout",
            OcrFailure::Failed(_) => "ocr_failed",
        }
    }
}

/// Runs tesseract on `image` with languages `lang` (tesseract's `-l`,
/// e.g. `eng` or `eng+deu`), for at most `limit`. With `rows`, the page is
/// read as one column of rows (page segmentation mode 4), which keeps a
/// receipt's or form's label and value on one line; otherwise tesseract
/// finds columns itself (its default, mode 3).
pub fn ocr(image: &[u8], lang: &str, rows: bool, limit: Duration) -> Result<Vec<OcrLine>, OcrFailure> {
    let psm = if rows { "4" } else { "3" };
    let done = child::run(
        // One thread: tesseract's OpenMP threads spin while they wait, and
        // beside a walk (or another tesseract) they took more CPU than
        // they saved (ruff's checkout: 3.2-3.4 s with them, 2.7 s
        // without). Images are read in parallel by the walk instead.
        Command::new("tesseract")
            .args(["-", "-", "-l", lang, "--psm", psm, "tsv"])
            .env("OMP_THREAD_LIMIT", "1"),
        image,
        limit,
    )
    .map_err(|e| match e {
        ChildError::Spawn(e) => {
            OcrFailure::Unavailable(format!("tesseract: {e} (Debian: apt-get install tesseract-ocr)"))
        }
        ChildError::Timeout => OcrFailure::Timeout,
        ChildError::Wait(e) => OcrFailure::Failed(e.to_string()),
    })?;
    if !done.status.success() {
        let first = done
            .stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        return Err(OcrFailure::Failed(format!(
            "tesseract exited with {}: {first}",
            done.status
        )));
    }
    Ok(parse_tsv(&String::from_utf8_lossy(&done.stdout)))
}

/// Groups tesseract's TSV words (level 5) into lines by (block, paragraph,
/// line), in reading order.
#[must_use]
pub fn parse_tsv(tsv: &str) -> Vec<OcrLine> {
    // (block, paragraph, line) key, the line so far, confidence sum, words.
    type Building = ((u32, u32, u32), OcrLine, f32, u32);
    let mut lines: Vec<Building> = Vec::new();
    for row in tsv.lines().skip(1) {
        let f: Vec<&str> = row.split('\t').collect();
        if f.len() < 12 || f[0] != "5" {
            continue;
        }
        let num = |i: usize| f[i].parse::<u32>().unwrap_or(0);
        let text = f[11].trim();
        let conf: f32 = f[10].parse().unwrap_or(-1.0);
        if text.is_empty() || conf < 0.0 {
            continue;
        }
        let key = (num(2), num(3), num(4));
        let (x, y, w, h) = (num(6), num(7), num(8), num(9));
        match lines.last_mut() {
            Some((k, line, sum, n)) if *k == key => {
                line.text.push(' ');
                line.text.push_str(text);
                let (x2, y2) = ((line.x + line.w).max(x + w), (line.y + line.h).max(y + h));
                line.x = line.x.min(x);
                line.y = line.y.min(y);
                line.w = x2 - line.x;
                line.h = y2 - line.y;
                *sum += conf;
                *n += 1;
            }
            _ => lines.push((
                key,
                OcrLine {
                    page: 1,
                    block: key.0,
                    text: text.to_owned(),
                    x,
                    y,
                    w,
                    h,
                    confidence: 0.0,
                },
                conf,
                1,
            )),
        }
    }
    lines
        .into_iter()
        .map(|(_, mut line, sum, n)| {
            line.confidence = sum / n as f32;
            line
        })
        .collect()
}

/// The smallest box around `lines`.
#[must_use]
pub fn union(lines: &[&OcrLine]) -> (u32, u32, u32, u32) {
    let x = lines.iter().map(|l| l.x).min().unwrap_or(0);
    let y = lines.iter().map(|l| l.y).min().unwrap_or(0);
    let x2 = lines.iter().map(|l| l.x + l.w).max().unwrap_or(0);
    let y2 = lines.iter().map(|l| l.y + l.h).max().unwrap_or(0);
    (x, y, x2 - x, y2 - y)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TSV: &str = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext
1\t1\t0\t0\t0\t0\t0\t0\t1275\t1650\t-1\t
4\t1\t1\t1\t1\t0\t151\t49\t95\t17\t-1\t
5\t1\t1\t1\t1\t1\t151\t49\t16\t17\t90\t3.
5\t1\t1\t1\t1\t2\t176\t49\t70\t17\t80\tOn-call
5\t1\t1\t1\t2\t1\t150\t78\t38\t17\t96\tThe
5\t1\t1\t1\t2\t2\t197\t80\t65\t17\t-1\t
5\t1\t2\t1\t1\t1\t150\t300\t50\t20\t70\tTotal
";

    #[test]
    fn words_group_into_lines_with_boxes_and_confidence() {
        let lines = parse_tsv(TSV);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].text, "3. On-call");
        assert_eq!((lines[0].x, lines[0].y, lines[0].w, lines[0].h), (151, 49, 95, 17));
        assert!((lines[0].confidence - 85.0).abs() < 1e-3);
        assert_eq!(lines[1].text, "The", "empty words are dropped");
        assert_eq!(lines[2].block, 2);
        assert_eq!(union(&[&lines[0], &lines[1]]), (150, 49, 96, 46));
    }
}
