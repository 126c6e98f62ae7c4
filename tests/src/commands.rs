//! Commands a test runs (the docker CLI, `ctr`, tmux, whalewatch itself),
//! each with a deadline.
//!
//! A command that waits on a hung engine would otherwise hang its test, and
//! with it the whole run: CI once sat 70 minutes on two tests of the host
//! dockerd with no line of output. Past [`COMMAND_DEADLINE`] the command is
//! killed and the test fails, saying what the host dockerd was stuck in
//! when the command was the docker CLI.

use std::io::{self, Read};
use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a command may run before it is killed: longer than
/// [`DEADLINE`](crate::DEADLINE), as whalewatch may wait on an engine for
/// that long itself.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(90);

/// Runs `command` like [`Command::output`] (no input, both outputs
/// captured), killing it after [`COMMAND_DEADLINE`]: then the error is of
/// kind [`io::ErrorKind::TimedOut`] and says which command it was.
pub fn output_within(command: &mut Command) -> io::Result<Output> {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    wait_within(&command_line(command), child)
}

/// Waits for `child` (the command `what`) to end, collecting what it wrote
/// to the outputs that were piped; kills it after [`COMMAND_DEADLINE`].
pub fn wait_within(what: &str, child: Child) -> io::Result<Output> {
    wait_for(what, child, COMMAND_DEADLINE)
}

/// [`wait_within`] with a deadline of `limit`.
fn wait_for(what: &str, mut child: Child, limit: Duration) -> io::Result<Output> {
    let stdout = child.stdout.take().map(read_to_end);
    let stderr = child.stderr.take().map(read_to_end);
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            // The readers are left behind: a grandchild may hold the pipes.
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "`{what}` did not end within {limit:?} and was killed{}",
                    stuck_engine(what)
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let collect = |reader: Option<JoinHandle<Vec<u8>>>| {
        reader.map_or_else(Vec::new, |r| r.join().unwrap_or_default())
    };
    Ok(Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    })
}

/// Reads `pipe` to its end on a thread of its own, so that a command that
/// fills one pipe while the other is read does not stall.
fn read_to_end(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// `program arg…`, for messages.
fn command_line(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// For a docker CLI command that hung: what the host dockerd's goroutines
/// have been blocked in for minutes (most docker commands of the tests go
/// to it, and it is the engine seen to deadlock).
fn stuck_engine(what: &str) -> String {
    if !what.starts_with("docker ") {
        return String::new();
    }
    match crate::rig::host_dockerd_stuck_goroutines() {
        Ok(stuck) if stuck.is_empty() => {
            "; no goroutine of the host dockerd has been blocked for a minute".into()
        }
        Ok(stuck) => format!("; the host dockerd's goroutines blocked for minutes:\n{stuck}"),
        Err(e) => format!("; the host dockerd's goroutines could not be dumped: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn(script: &str) -> Child {
        Command::new("sh")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sh runs")
    }

    #[test]
    fn a_command_that_ends_gives_both_outputs_and_its_status() {
        let output = wait_for(
            "sh",
            spawn("echo out; echo err >&2; exit 3"),
            COMMAND_DEADLINE,
        )
        .expect("it ends");
        assert_eq!(output.status.code(), Some(3));
        assert_eq!(output.stdout, b"out\n");
        assert_eq!(output.stderr, b"err\n");
    }

    #[test]
    fn a_command_past_its_deadline_is_killed_and_said_by_name() {
        let child = spawn("exec sleep 600");
        let pid = child.id();
        let error = wait_for("sleep 600", child, Duration::from_millis(200)).expect_err("killed");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(
            error
                .to_string()
                .starts_with("`sleep 600` did not end within 200ms"),
            "{error}"
        );
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "the command was killed and reaped"
        );
    }
}
