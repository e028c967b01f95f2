//! The project file: `scout.toml` at a source's root (or `--config FILE`;
//! for `batch`, only that) holds the options a team shares. Its keys are the commands' long option
//! names; a table named after a command (`[audit]`) applies to that command
//! only. The command line and the options' environment variables override
//! it; `scout config` shows what is in force and where each value came from.
//!
//! In: the process's arguments. Out: the arguments with the file's options
//! added where neither the command line nor the environment set them, and
//! which of them came from the file.
//! Never: reads a file under `scout serve` requests (only at the command
//! line), and never lets a file set `--config` itself.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory};

use super::Cli;

/// The project file's name, looked for at the root of the first folder a
/// command reads.
pub const FILE_NAME: &str = "scout.toml";

/// Commands a project file applies to: those that read sources.
const COMMANDS: &[&str] = &["ingest", "ask", "audit", "extract", "batch", "serve", "pack"];

/// Options a project file cannot set: where the file itself comes from,
/// and what only a person at the command line should choose: every option
/// that names a file or folder scout writes, or a server's roots (a cloned
/// repository's file must not make `scout audit` overwrite `~/.bashrc`).
const NOT_FROM_A_FILE: &[&str] = &[
    "config",
    "no-config",
    "help",
    "version", // the file itself
    "corpus",
    "out",
    "output",
    "sarif",
    "md",
    "html",
    "jsonl",
    "map", // written
    "data",
    "corpora",
    "root", // a server's folders
];

/// Options only a file the user names (`--config FILE`) may set, not a
/// `scout.toml` found in a folder scout reads, which may come with a
/// cloned repository: which environment variable's secret is sent to the
/// endpoint as its key, whether credentials stay unredacted in what is
/// sent, links followed out of the tree, and where a server listens.
/// (The engine, endpoints and KV budgets a team shares stay settable: the
/// run says on stderr which options came from the file.)
const NOT_FROM_A_FOUND_FILE: &[&str] = &["api-key-env", "keep-secrets", "follow", "listen"];

#[derive(Debug, Args, Clone)]
pub struct ConfigArgs {
    /// The command whose options to show.
    #[arg(long = "for", value_name = "COMMAND", default_value = "ask")]
    pub command: String,
    /// The folder whose `scout.toml` applies (default: the current folder).
    #[arg(value_name = "FOLDER")]
    pub folder: Option<PathBuf>,
}

/// The arguments after the project file is applied, and the options it set.
pub struct Applied {
    pub args: Vec<OsString>,
    pub file: Option<PathBuf>,
    pub from_file: Vec<String>,
}

/// Applies `--config FILE`, or the `scout.toml` at the first source folder's
/// root, to `args` (the process's, program name first). Arguments that do
/// not parse are returned as they are, for clap to explain.
pub fn apply(args: Vec<OsString>) -> Result<Applied> {
    let unchanged = |args| Applied {
        args,
        file: None,
        from_file: Vec::new(),
    };
    // Errors are ignored here (a missing required option, say): clap
    // explains them when the arguments are parsed for real.
    let Ok(matches) = Cli::command().ignore_errors(true).try_get_matches_from(&args) else {
        return Ok(unchanged(args));
    };
    let Some((name, sub)) = matches.subcommand() else {
        return Ok(unchanged(args));
    };
    if !COMMANDS.contains(&name) || sub.get_flag("no_config") {
        return Ok(unchanged(args));
    }
    let (file, found) = match sub.get_one::<PathBuf>("config") {
        Some(f) => (Some(f.clone()), false),
        None => (project_file(name, sub), true),
    };
    let Some(file) = file else {
        return Ok(unchanged(args));
    };
    let options = read(&file, name, found)?;
    let mut added = Vec::new();
    let mut from_file = Vec::new();
    let command = Cli::command();
    let sub_cmd = command.find_subcommand(name).expect("a parsed subcommand exists");
    for (key, value) in options {
        let Some(arg) = sub_cmd.get_arguments().find(|a| a.get_long() == Some(key.as_str())) else {
            continue;
        };
        let id = arg.get_id().as_str();
        if matches!(
            sub.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let flag = !arg.get_action().takes_values();
        for v in flatten(&key, &value, &file)? {
            match (flag, v.as_str()) {
                (true, "true") => added.push(OsString::from(format!("--{key}"))),
                (true, "false") => {}
                (true, _) => bail!("{}: `{key}` is a switch: true or false", file.display()),
                (false, _) => added.push(OsString::from(format!("--{key}={v}"))),
            }
        }
        from_file.push(key);
    }
    // The options go right after the command's name, so that a `--` among
    // the command's own arguments still ends them.
    let at = args.iter().position(|a| a == name).map_or(args.len(), |i| i + 1);
    let mut out = args;
    out.splice(at..at, added);
    Ok(Applied {
        args: out,
        file: Some(file),
        from_file,
    })
}

/// `scout.toml` at the root of the first folder the command reads.
fn project_file(name: &str, sub: &ArgMatches) -> Option<PathBuf> {
    let id = match name {
        "ingest" => "paths",
        "serve" => "root",
        // A jobs file names its own sources: --config only.
        "batch" => return None,
        _ => "sources",
    };
    let first = sub.get_many::<PathBuf>(id)?.find(|p| p.is_dir())?;
    Some(first.join(FILE_NAME)).filter(|p| p.is_file())
}

/// The file's options for `command`: its top-level keys, then its
/// `[command]` table's (which win). Every key must be an option some
/// command has; a file `found` in a source folder (not named with
/// `--config`) sets none of [`NOT_FROM_A_FOUND_FILE`].
fn read(file: &Path, command: &str, found: bool) -> Result<Vec<(String, toml::Value)>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        let at = e
            .span()
            .map(|s| {
                let line = text[..s.start].lines().count().max(1);
                format!(" (line {line})")
            })
            .unwrap_or_default();
        anyhow::anyhow!("{}: not valid TOML{at}: {}", file.display(), e.message())
    })?;
    let known = known_options();
    let mut out: Vec<(String, toml::Value)> = Vec::new();
    let put = |key: &str, value: &toml::Value, out: &mut Vec<(String, toml::Value)>| -> Result<()> {
        let key = key.replace('_', "-");
        if NOT_FROM_A_FILE.contains(&key.as_str()) {
            bail!("{}: `{key}` can only be given on the command line", file.display());
        }
        if found && NOT_FROM_A_FOUND_FILE.contains(&key.as_str()) {
            bail!(
                "{}: `{key}` can only be given on the command line, in its environment variable, or in a file named with --config FILE (a scout.toml found in a folder scout reads may come with a cloned repository); run with --no-config to read none",
                file.display()
            );
        }
        if !known.contains(&key) {
            bail!(
                "{}: no command has an option `--{key}` (keys are long option names, as `scout {command} --help` lists them; a table such as [audit] holds one command's)",
                file.display()
            );
        }
        out.retain(|(k, _)| *k != key);
        out.push((key, value.clone()));
        Ok(())
    };
    for (key, value) in &table {
        match value {
            toml::Value::Table(_) if COMMANDS.contains(&key.as_str()) => {}
            toml::Value::Table(_) => bail!(
                "{}: [{key}] is not a command a project file applies to ({})",
                file.display(),
                COMMANDS.join(", ")
            ),
            _ => put(key, value, &mut out)?,
        }
    }
    if let Some(toml::Value::Table(own)) = table.get(command) {
        for (key, value) in own {
            put(key, value, &mut out)?;
        }
    }
    Ok(out)
}

/// Every long option of the commands a project file applies to.
fn known_options() -> Vec<String> {
    let cli = Cli::command();
    COMMANDS
        .iter()
        .filter_map(|c| cli.find_subcommand(c))
        .flat_map(|c| {
            c.get_arguments()
                .filter_map(|a| a.get_long())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A value as command-line strings: arrays give one per element.
fn flatten(key: &str, value: &toml::Value, file: &Path) -> Result<Vec<String>> {
    Ok(match value {
        toml::Value::String(s) => vec![s.clone()],
        toml::Value::Integer(i) => vec![i.to_string()],
        toml::Value::Float(f) => vec![f.to_string()],
        toml::Value::Boolean(b) => vec![b.to_string()],
        toml::Value::Array(items) => items
            .iter()
            .map(|v| match v {
                toml::Value::Array(_) | toml::Value::Table(_) => {
                    bail!("{}: `{key}`: a list of plain values", file.display())
                }
                other => Ok(flatten(key, other, file)?.remove(0)),
            })
            .collect::<Result<_>>()?,
        toml::Value::Datetime(_) | toml::Value::Table(_) => {
            bail!("{}: `{key}`: a string, number, switch or list", file.display())
        }
    })
}

/// One option in force: its name, value and where the value came from.
pub struct InForce {
    pub option: String,
    pub value: String,
    pub source: String,
}

/// The options `scout COMMAND` would run with in `folder`, and where each
/// value came from (`scout config`).
pub fn in_force(a: &ConfigArgs) -> Result<(Option<PathBuf>, Vec<InForce>)> {
    if !COMMANDS.contains(&a.command.as_str()) {
        bail!("--for: one of {}", COMMANDS.join(", "));
    }
    let folder = a.folder.clone().unwrap_or_else(|| PathBuf::from("."));
    let mut args: Vec<OsString> = vec!["scout".into(), a.command.clone().into()];
    match a.command.as_str() {
        "serve" => args.extend([OsString::from("--root"), folder.into_os_string()]),
        "batch" => args.push("jobs.jsonl".into()),
        "ask" => args.extend([folder.into_os_string(), "QUESTION".into()]),
        _ => args.push(folder.into_os_string()),
    }
    let applied = apply(args)?;
    let matches = Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(&applied.args)
        .map_err(|e| anyhow::anyhow!("{}", e.render()))?;
    let (_, sub) = matches.subcommand().expect("a command");
    let cli = Cli::command();
    let cmd = cli.find_subcommand(&a.command).expect("a known command");
    let mut rows = Vec::new();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if arg.is_hide_set() || NOT_FROM_A_FILE.contains(&long) {
            continue;
        }
        let id = arg.get_id().as_str();
        let value = sub
            .get_raw(id)
            .map(|v| {
                v.map(|s| s.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let source = match sub.value_source(id) {
            Some(ValueSource::CommandLine) if applied.from_file.iter().any(|k| k == long) => applied
                .file
                .as_deref()
                .map_or_else(String::new, |f| f.display().to_string()),
            Some(ValueSource::CommandLine) => "command line".to_owned(),
            Some(ValueSource::EnvVariable) => format!(
                "${}",
                arg.get_env()
                    .map_or_else(String::new, |e| e.to_string_lossy().into_owned())
            ),
            Some(ValueSource::DefaultValue) => "default".to_owned(),
            _ => continue,
        };
        if value.is_empty() && source == "default" {
            continue;
        }
        rows.push(InForce {
            option: format!("--{long}"),
            value,
            source,
        });
    }
    Ok((applied.file, rows))
}
