//! Long-lived PDF workers: `scout pdf-worker` processes that each read one
//! PDF after another from their stdin, so a folder of PDFs does not pay a
//! process start for every file.
//!
//! What one process per file gave is kept: a worker past its time limit is
//! killed and reported as a timeout; one that dies (a crash, its memory cap)
//! is replaced; a document a worker died on after serving others is read
//! again by a fresh worker, so a result never depends on what the worker read
//! before. A worker that reported a timeout exits itself (its parser thread
//! may still be running), and one retires after [`MAX_SERVED`] documents.
//!
//! The protocol, one document at a time: a JSON line ([`Request`]) and the
//! document's bytes on the worker's stdin; one JSON line (the
//! `Result<PdfContent, PdfFailure>`) on its stdout.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{extract_pages, PdfContent, PdfFailure};
use crate::ingest::SkipReason;

/// Documents a worker reads before it is replaced.
pub const MAX_SERVED: usize = 256;

/// Extra seconds the parent waits beyond the worker's own limit, so the
/// worker reports its timeout itself when it can.
pub const WORKER_GRACE_SECONDS: u64 = 3;

/// What precedes a document on a worker's stdin.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    /// The path shown in anchors.
    path: String,
    /// The parser's time limit.
    seconds: u64,
    /// How many bytes of document follow this line.
    bytes: usize,
}

/// Running workers, waiting for the next document.
#[derive(Debug)]
pub struct WorkerPool {
    exe: PathBuf,
    max_memory_bytes: u64,
    idle: Mutex<Vec<Worker>>,
}

impl PartialEq for WorkerPool {
    fn eq(&self, other: &Self) -> bool {
        self.exe == other.exe && self.max_memory_bytes == other.max_memory_bytes
    }
}

impl Eq for WorkerPool {}

#[derive(Debug)]
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Each answer line, as the worker wrote it; disconnected when its
    /// stdout closes.
    answers: mpsc::Receiver<Vec<u8>>,
    /// Reads the worker's stderr; gives the last line it wrote, once it
    /// is gone (quoted when it dies).
    errors: Option<JoinHandle<String>>,
    served: usize,
}

/// How a worker's turn with a document ended.
enum Turn {
    /// It answered and can take another document (or not: `retire`).
    Answered {
        result: Result<PdfContent, PdfFailure>,
        retire: bool,
    },
    /// It ran past the limit and was killed.
    TimedOut,
    /// It died: a crash, a memory cap, or it could not be written to.
    Died(String),
}

impl WorkerPool {
    #[must_use]
    pub fn new(exe: PathBuf, max_memory_bytes: u64) -> Self {
        Self {
            exe,
            max_memory_bytes,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The PDF in `bytes`, read by a worker with a time limit of `limit`.
    pub fn extract(&self, path: &str, bytes: &[u8], limit: Duration) -> Result<PdfContent, PdfFailure> {
        let died = |detail: String| PdfFailure {
            reason: SkipReason::PdfPanic,
            detail,
        };
        loop {
            let worker = self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop();
            let mut worker = match worker {
                Some(w) => w,
                None => Worker::spawn(&self.exe, self.max_memory_bytes)
                    .map_err(|e| died(format!("could not run the PDF worker: {e}")))?,
            };
            let fresh = worker.served == 0;
            match worker.read(path, bytes, limit) {
                Turn::Answered { result, retire } => {
                    if retire {
                        worker.stop();
                    } else {
                        self.idle
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(worker);
                    }
                    return result;
                }
                Turn::TimedOut => {
                    return Err(PdfFailure {
                        reason: SkipReason::PdfTimeout,
                        detail: format!("the parser was killed after {} s", limit.as_secs()),
                    })
                }
                Turn::Died(why) if fresh => return Err(died(why)),
                // What killed a worker that had read other documents may
                // be what they left (its memory cap reached sooner): the
                // document is read again by a fresh one.
                Turn::Died(_) => {}
            }
        }
    }

    /// Ends the workers waiting for a document, and waits for them, so
    /// that none outlives the work it was started for (and their CPU time
    /// is counted as this process's children's). The pool stays usable:
    /// the next document starts a worker.
    pub fn stop_idle(&self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for w in idle {
            w.stop();
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.stop_idle();
    }
}

impl Worker {
    fn spawn(exe: &Path, max_memory_bytes: u64) -> std::io::Result<Self> {
        let mut child = Command::new(exe)
            .args(["pdf-worker", "--max-memory"])
            .arg(max_memory_bytes.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let errors = std::thread::spawn(move || {
            let mut last = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !line.trim().is_empty() {
                    last = line;
                }
            }
            last
        });
        Ok(Self {
            stdin: child.stdin.take(),
            child,
            answers,
            errors: Some(errors),
            served: 0,
        })
    }

    /// Gives the worker one document and waits for its answer.
    fn read(&mut self, path: &str, bytes: &[u8], limit: Duration) -> Turn {
        let request = Request {
            path: path.to_owned(),
            seconds: limit.as_secs().max(1),
            bytes: bytes.len(),
        };
        let Some(mut stdin) = self.stdin.take() else {
            return Turn::Died("the PDF worker's input was closed".into());
        };
        let mut message = serde_json::to_vec(&request).expect("a request serializes");
        message.push(b'\n');
        message.extend_from_slice(bytes);
        // Written from a thread, so a worker that stops reading cannot stall
        // the wait below.
        let writer = std::thread::spawn(move || {
            let written = stdin.write_all(&message).and_then(|()| stdin.flush());
            (stdin, written)
        });
        let answer = self
            .answers
            .recv_timeout(limit + Duration::from_secs(WORKER_GRACE_SECONDS));
        if answer.is_err() {
            // Killed before the writer is joined: a worker that hangs
            // without reading would hold the write for ever.
            let _ = self.child.kill();
        }
        let written = writer
            .join()
            .ok()
            .and_then(|(stdin, written)| written.ok().map(|()| stdin));
        match answer {
            Ok(answer) => {
                self.served += 1;
                let result =
                    serde_json::from_slice::<Result<PdfContent, PdfFailure>>(&answer).map_err(|e| PdfFailure {
                        reason: SkipReason::PdfPanic,
                        detail: format!("unreadable answer from the PDF worker: {e}"),
                    });
                // A worker that timed out exits; one that gave an answer
                // that cannot be read is not trusted with another.
                let retire = match &result {
                    Ok(Err(f)) => f.reason == SkipReason::PdfTimeout,
                    Ok(Ok(_)) => false,
                    Err(_) => true,
                } || self.served >= MAX_SERVED;
                self.stdin = written;
                Turn::Answered {
                    result: result.and_then(|r| r),
                    retire: retire || self.stdin.is_none(),
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.wait();
                Turn::TimedOut
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait();
                // Its stderr has closed with it: the last line is all read.
                let last = self.errors.take().and_then(|e| e.join().ok()).unwrap_or_default();
                let last = if last.is_empty() { "no message".to_owned() } else { last };
                Turn::Died(format!(
                    "the parser process died ({}; it may have hit its memory cap): {last}",
                    status.map_or_else(|e| e.to_string(), |s| s.to_string()),
                ))
            }
        }
    }

    /// Ends the worker: its input closed, then killed if it has not gone.
    fn stop(mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The worker process: reads documents from stdin one after another and
/// writes each result as a JSON line on stdout, until stdin closes or a
/// parser runs past its limit. Memory is capped first, so a decompression
/// bomb fails here.
#[must_use]
pub fn worker_main(max_memory_bytes: u64) -> i32 {
    // The parsers' panics are caught and become typed results. One log line
    // each, never a backtrace: with RUST_BACKTRACE set, symbolizing one took
    // about 0.4 s of CPU, more than reading most PDFs. The parent quotes the
    // last line of the worker's stderr when it dies.
    std::panic::set_hook(Box::new(|info| tracing::warn!("pdf-worker: {info}")));
    #[cfg(unix)]
    if let Err(e) = rlimit::setrlimit(rlimit::Resource::AS, max_memory_bytes, max_memory_bytes) {
        tracing::warn!("pdf-worker: could not cap memory: {e}");
    }
    #[cfg(not(unix))]
    let _ = max_memory_bytes;
    let mut input = std::io::stdin().lock();
    let mut out = std::io::stdout().lock();
    let mut header = String::new();
    loop {
        header.clear();
        match input.read_line(&mut header) {
            Ok(0) => return 0,
            Ok(_) => {}
            Err(e) => {
                tracing::error!("pdf-worker: reading stdin: {e}");
                return 2;
            }
        }
        let request: Request = match serde_json::from_str(&header) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("pdf-worker: an unreadable request: {e}");
                return 2;
            }
        };
        let mut bytes = vec![0; request.bytes];
        if let Err(e) = input.read_exact(&mut bytes) {
            tracing::error!("pdf-worker: reading {} bytes of {}: {e}", request.bytes, request.path);
            return 2;
        }
        let result = extract_pages(&request.path, bytes, Duration::from_secs(request.seconds));
        let written = serde_json::to_writer(&mut out, &result)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        if let Err(e) = written {
            tracing::error!("pdf-worker: writing the result: {e}");
            return 2;
        }
        // The parser thread that ran past its limit may still be running:
        // only the process's end stops it.
        if matches!(&result, Err(f) if f.reason == SkipReason::PdfTimeout) {
            return 0;
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// A stand-in worker speaking the protocol: it answers each request
    /// with an error naming its process, and runs `on_second` when a
    /// second request comes.
    fn stand_in(dir: &Path, on_second: &str) -> WorkerPool {
        use std::os::unix::fs::PermissionsExt;
        let exe = dir.join("worker.sh");
        let script = format!(
            r#"#!/bin/sh
n=0
while read -r line; do
  n=$((n + 1))
  [ "$n" = 2 ] && {{ {on_second}; }}
  bytes=$(echo "$line" | sed 's/.*"bytes":\([0-9]*\).*/\1/')
  dd bs=1 count="$bytes" status=none >/dev/null
  echo '{{"Err":{{"reason":"pdf_error","detail":"worker '$$' document '$n'"}}}}'
done
"#
        );
        std::fs::write(&exe, script).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        WorkerPool::new(exe, 1 << 30)
    }

    fn detail(pool: &WorkerPool, bytes: &[u8]) -> String {
        pool.extract("a.pdf", bytes, Duration::from_secs(5)).unwrap_err().detail
    }

    #[test]
    fn one_worker_reads_one_document_after_another() {
        let dir = tempfile::tempdir().unwrap();
        let pool = stand_in(dir.path(), "true");
        let first = detail(&pool, b"%PDF-1.4 one");
        let second = detail(&pool, &vec![b'x'; 100_000]);
        let third = detail(&pool, b"%PDF three");
        let worker = |d: &str| d.split(' ').nth(1).unwrap().to_owned();
        assert!(first.ends_with("document 1"), "{first}");
        assert!(second.ends_with("document 2"), "{second}");
        assert!(third.ends_with("document 3"), "{third}");
        assert_eq!(worker(&first), worker(&third), "the same process");
    }

    #[test]
    fn a_document_a_used_worker_died_on_is_read_again_by_a_fresh_one() {
        let dir = tempfile::tempdir().unwrap();
        let pool = stand_in(dir.path(), "kill -SEGV $$");
        let first = detail(&pool, b"%PDF one");
        let second = detail(&pool, b"%PDF two");
        assert!(first.ends_with("document 1"), "{first}");
        assert!(second.ends_with("document 1"), "a fresh worker's first: {second}");
        assert_ne!(first.split(' ').nth(1), second.split(' ').nth(1));
    }

    #[test]
    fn a_worker_is_retired_after_its_share_of_documents() {
        let dir = tempfile::tempdir().unwrap();
        let pool = stand_in(dir.path(), "true");
        let mut workers = std::collections::HashSet::new();
        for _ in 0..=MAX_SERVED {
            workers.insert(detail(&pool, b"%PDF").split(' ').nth(1).unwrap().to_owned());
        }
        assert_eq!(workers.len(), 2);
    }
}
