//! Resource bounds, each a named constant with the reason it exists.
//!
//! Every bound can be overridden through [`Limits`], which the CLI fills from
//! flags; library code reads the struct, never the constants directly.

/// Files larger than this are skipped before they are read: a prompt that a
/// person audits is made of source and documents, and a 4 MiB text file is
/// already about a million tokens, well past any single window.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// A `.gitignore` or `.ignore` file larger than this is not read, and the
/// folder it governs is skipped (counted, with the reason): its patterns
/// compile to matchers that take several hundred times the file's size in
/// memory (a 1 MiB one took 940 MB, a 10 MiB one 6.2 GB); 128 KiB takes
/// about 140 MB, and real ignore files are a few KiB.
pub const MAX_IGNORE_BYTES: u64 = 128 * 1024;

/// tree-sitter has no limit of its own; a pathological file could take
/// seconds. Past this the file is kept as plain text, without an outline.
pub const PARSE_MILLIS: u64 = 2000;

/// tesseract takes about a second for a page at 150 dpi here; a minute
/// means something is wrong with the image.
pub const OCR_SECONDS: u64 = 60;

/// A scanned page image larger than this many pixels is not decoded for
/// OCR (a 600 dpi A3 scan is about 70 M); it guards against decompression
/// bombs hiding behind a small file.
pub const MAX_SCAN_PIXELS: u64 = 100_000_000;

/// Widest or tallest image decoded: a 600 dpi scan of an A0 sheet is
/// about 20,000 px; past that an image is a mistake or an attack.
pub const MAX_IMAGE_SIDE: u32 = 30_000;

/// Memory the image decoder may allocate for one image (the decoded
/// pixels included).
pub const MAX_IMAGE_ALLOC_BYTES: u64 = 512 * 1024 * 1024;

/// One PDF stream may inflate to at most this (a 100 M pixel RGB scan is
/// 300 MB); past it the document is a decompression bomb.
pub const MAX_PDF_STREAM_BYTES: u64 = 512 * 1024 * 1024;

/// All of a PDF's streams together may inflate to at most this.
pub const MAX_PDF_INFLATED_BYTES: u64 = 1024 * 1024 * 1024;

/// Objects in one PDF: real documents of thousands of pages hold a few
/// hundred thousand.
pub const MAX_PDF_OBJECTS: usize = 2_000_000;

/// Outline (bookmark) nodes read from one PDF; past this the outline is
/// cut, so a hostile outline cannot cost unbounded time.
pub const MAX_PDF_BOOKMARKS: usize = 100_000;

/// Form `XObjects` nested in one another deeper than this make a PDF refused:
/// text extractors follow them by recursion (real documents nest a few).
pub const MAX_PDF_FORM_DEPTH: usize = 64;

/// The disk tier of the KV cache where the cache folder's free space cannot
/// be read: saved prompt prefixes past this are removed, least recently
/// used first (the default model's KV for a full 8k context is about
/// 190 MB). Otherwise the tier takes a quarter of the free space, up to
/// [`KV_DISK_MAX_BYTES`].
pub const KV_DISK_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// The most the disk tier takes by default, however much is free: 256 GiB
/// hold about 1.4M tokens of Llama 4 Scout's KV at bf16.
pub const KV_DISK_MAX_BYTES: u64 = 256 * 1024 * 1024 * 1024;

/// Address space a PDF worker process may use: far more than any sane PDF
/// needs, far less than the machine has, so a decompression bomb fails
/// inside the worker.
pub const PDF_WORKER_MEMORY_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// PDFs are often larger than source files (embedded fonts and scans), so
/// they get their own cap.
pub const MAX_PDF_BYTES: u64 = 64 * 1024 * 1024;

/// The whole corpus: past this, ingest stops adding documents and counts
/// the rest as skipped, so a mistaken `scout ingest /` cannot fill the disk.
pub const MAX_CORPUS_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// The PDF parsers have no time limit of their own and some broken PDFs make
/// them spin; past this the document is reported as timed out and the run goes on.
pub const PDF_EXTRACT_SECONDS: u64 = 30;

/// A text segment is at most this many lines: small enough that a window can
/// split a huge document between segments, large enough that anchors stay
/// few. Segments end at line boundaries so anchors stay exact.
pub const SEGMENT_MAX_LINES: usize = 120;

/// ... and at most this many bytes, for files with very long lines.
pub const SEGMENT_MAX_BYTES: usize = 8 * 1024;

/// Bytes sniffed for a NUL to call a file binary (the same rule as git and
/// ripgrep use).
pub const BINARY_SNIFF_BYTES: usize = 8 * 1024;

/// Tokens kept free for the answer when a prompt is fitted to the context.
pub const ANSWER_TOKENS: u32 = 512;

/// Bytes of prompt-prefix KV an engine keeps in memory for the next
/// request over the same corpus (the host tier); least recently used out.
pub const KV_HOST_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// The longest a prefill of a prompt prefix runs between checkpoints of
/// its KV to the disk tier (`--kv-checkpoint`), so an interrupted prefill
/// resumes where it stopped.
pub const KV_CHECKPOINT_SECONDS: u64 = 60;

/// `--kv-reuse documents`: the share of each moved run of unchanged text
/// whose first tokens are read again (`--kv-recompute`), to repair what
/// its cells attended to before the change.
pub const KV_RECOMPUTE: f64 = 0.1;

/// `scout serve`: requests that may wait for an engine before new ones are
/// refused with 429 (`--queue`).
pub const SERVER_QUEUE: usize = 16;

/// `scout serve`: the largest request body accepted (`--max-body-bytes`).
pub const SERVER_BODY_BYTES: usize = 8 * 1024 * 1024;

/// One line of a batch's jobs file: a chat body with an image as a data URL
/// fits; parsed JSON takes tens of times its text, so a line past this is a
/// failed job, never parsed (a 50 MB line took 2 GB).
pub const MAX_JOB_LINE_BYTES: usize = 8 * 1024 * 1024;

/// A question (or task text) is refused past this, before it is tokenized:
/// 256 KiB is about 64k tokens, more than a question needs and less than a
/// small model's context; a 1 GB question once took 22 GB to tokenize.
pub const MAX_QUESTION_BYTES: usize = 256 * 1024;

/// Longest string the model may write for a schema field that sets no
/// bound of its own (`ask --schema`, `extract`), so a constrained answer
/// always finishes its object.
pub const GENERATED_STRING_CHARS: u64 = 400;

/// `scout serve`: the longest one generation may run (`--timeout`).
pub const GENERATION_SECONDS: u64 = 300;

/// `scout serve`: the longest a client may take to send a request's
/// headers, and then its body (`--client-timeout`); a slower client is cut
/// off (its connection closed, or 408), so slow clients cannot hold the
/// server's connections.
pub const SERVER_CLIENT_SECONDS: u64 = 30;

/// The bounds in force for one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub max_ignore_bytes: u64,
    pub max_pdf_bytes: u64,
    pub max_corpus_bytes: u64,
    pub pdf_extract_seconds: u64,
    pub parse_millis: u64,
    pub ocr_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: MAX_FILE_BYTES,
            max_ignore_bytes: MAX_IGNORE_BYTES,
            max_pdf_bytes: MAX_PDF_BYTES,
            max_corpus_bytes: MAX_CORPUS_BYTES,
            pdf_extract_seconds: PDF_EXTRACT_SECONDS,
            parse_millis: PARSE_MILLIS,
            ocr_seconds: OCR_SECONDS,
        }
    }
}

/// Ask jobs over one corpus that a batch answers together, each question
/// forking the corpus's KV (llama.cpp gives each its own KV stream, so
/// memory grows with this).
pub const FORKED_QUESTIONS: usize = 4;
