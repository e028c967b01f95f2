//! What of the library's diagnostics reaches the terminal: library code
//! logs through `tracing`; this installs the one subscriber, on stderr.
//!
//! In: the command's `--quiet` / `--verbose` and `RUST_LOG`.
//! Out: `scout: MESSAGE` lines on stderr (warnings and errors by default;
//! `-v` adds info, `RUST_LOG=scout=debug` and the like choose anything).
//! Never: writes to stdout, which carries answers and JSON.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How much a command wants to hear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noise {
    Quiet,
    Normal,
    Verbose,
}

/// `scout: message`, and the level for anything but a warning or an
/// error's ordinary wording (`scout: debug: ...`).
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let level = *event.metadata().level();
        match level {
            Level::WARN | Level::ERROR | Level::INFO => write!(writer, "scout: ")?,
            other => write!(writer, "scout: {}: ", other.as_str().to_lowercase())?,
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Installs the subscriber: `RUST_LOG` when set, else by `noise`.
pub fn init(noise: Noise) {
    let default = match noise {
        Noise::Quiet => "scout=error",
        Noise::Normal => "scout=warn",
        Noise::Verbose => "scout=info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(Plain)
        .try_init();
}
