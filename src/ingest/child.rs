//! Running a helper process (tesseract, scout's own PDF worker) with its
//! input on stdin, its output collected, and a wall-clock limit past which
//! it is killed.

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What a finished child left.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

#[derive(Debug)]
pub enum ChildError {
    /// It could not be started (not installed, not executable).
    Spawn(std::io::Error),
    /// It ran past the limit and was killed.
    Timeout,
    /// Waiting on it failed.
    Wait(std::io::Error),
}

/// Runs `cmd` with `input` on stdin for at most `limit`. stdin, stdout and
/// stderr are served on their own threads, so a full pipe never stalls it.
pub fn run(cmd: &mut Command, input: &[u8], limit: Duration) -> Result<Finished, ChildError> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(ChildError::Spawn)?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        // A child that exits without reading all of it closes the pipe:
        // not an error here, its exit status says what happened.
        let _ = stdin.write_all(&input);
    });
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let err_reader = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        err
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ChildError::Timeout);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(ChildError::Wait(e)),
        }
    };
    let _ = writer.join();
    Ok(Finished {
        status,
        stdout: reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_collected_and_hangs_are_killed() {
        let done = run(Command::new("cat").arg("-"), b"hello", Duration::from_secs(10)).unwrap();
        assert!(done.status.success());
        assert_eq!(done.stdout, b"hello");
        let started = Instant::now();
        let hang = run(Command::new("sleep").arg("30"), b"", Duration::from_millis(200));
        assert!(matches!(hang, Err(ChildError::Timeout)));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(
            run(&mut Command::new("/no/such/tool"), b"", Duration::from_secs(1)),
            Err(ChildError::Spawn(_))
        ));
    }
}
