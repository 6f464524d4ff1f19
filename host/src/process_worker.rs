//! Child processes for the core's [`Work::Spawn`](clawgate_core::Work::Spawn) (MCP stdio
//! servers). Each child gets three threads: one writes the lines the core sends to its stdin
//! ([`ProcessWorkers::write_line`]), one reads its stdout line by line (a line over
//! [`MAX_LINE_BYTES`] is cut there, the rest of it dropped) and reports each as a
//! [`WorkResult::ProcessLine`], then the exit as one [`WorkResult::ProcessExited`], and one
//! logs its stderr. [`ProcessWorkers::kill`] kills the child; nothing here runs on the loop.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use clawgate_core::{Level, ProcessSpec, WorkId, WorkResult};

/// The longest stdout line reported whole: one byte over the core's message bound, so an
/// over-long message is refused by the core rather than misread.
pub const MAX_LINE_BYTES: usize = clawgate_core::tools::mcp::jsonrpc::MAX_MESSAGE_BYTES + 1;
/// The longest stderr line logged.
const MAX_STDERR_LINE: usize = 8 * 1024;
/// How often the stdout reader checks for the exit after stdout closed.
const EXIT_POLL: Duration = Duration::from_millis(10);
/// The stack of a child's threads.
const STACK_BYTES: usize = 256 * 1024;

/// Where results go: called on worker threads, must not block.
type Report = Arc<dyn Fn(WorkId, WorkResult) + Send + Sync>;
/// Where stderr lines go.
type Log = Arc<dyn Fn(Level, String) + Send + Sync>;

struct Running {
    child: Arc<Mutex<Child>>,
    stdin: Sender<Vec<u8>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running children, by the id of their [`Work::Spawn`](clawgate_core::Work::Spawn).
pub struct ProcessWorkers {
    running: Arc<Mutex<HashMap<WorkId, Running>>>,
    report: Report,
    log: Log,
}

impl ProcessWorkers {
    /// No children yet; results go to `report`, stderr lines to `log`.
    pub fn new(
        report: impl Fn(WorkId, WorkResult) + Send + Sync + 'static,
        log: impl Fn(Level, String) + Send + Sync + 'static,
    ) -> Self {
        ProcessWorkers {
            running: Arc::default(),
            report: Arc::new(report),
            log: Arc::new(log),
        }
    }

    /// Start `spec` as `id`. A failure to start is reported as its exit.
    pub fn spawn(&self, id: WorkId, spec: ProcessSpec) {
        if let Err(e) = self.try_spawn(id, &spec) {
            (self.report)(
                id,
                WorkResult::ProcessExited(format!("cannot start {}: {e}", spec.command)),
            );
        }
    }

    fn try_spawn(&self, id: WorkId, spec: &ProcessSpec) -> io::Result<()> {
        let mut command = Command::new(&spec.command);
        command
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cwd) = &spec.cwd {
            command.current_dir(cwd);
        }
        let mut child = command.spawn()?;
        let missing = || io::Error::other("no pipe");
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let stdout = child.stdout.take().ok_or_else(missing)?;
        let stderr = child.stderr.take().ok_or_else(missing)?;
        let child = Arc::new(Mutex::new(child));
        let (lines, queue) = mpsc::channel::<Vec<u8>>();
        lock(&self.running).insert(
            id,
            Running {
                child: child.clone(),
                stdin: lines,
            },
        );
        let builder = || thread::Builder::new().stack_size(STACK_BYTES);
        builder()
            .name("mcp-stdin".into())
            .spawn(move || write_lines(stdin, queue))?;
        let log = self.log.clone();
        let name = spec.command.clone();
        builder()
            .name("mcp-stderr".into())
            .spawn(move || log_stderr(stderr, &name, &*log))?;
        let report = self.report.clone();
        let running = self.running.clone();
        builder().name("mcp-stdout".into()).spawn(move || {
            read_lines(stdout, |line| report(id, WorkResult::ProcessLine(line)));
            let how = wait(&child);
            lock(&running).remove(&id);
            report(id, WorkResult::ProcessExited(how));
        })?;
        Ok(())
    }

    /// Queue `line` for the stdin of `id` (ignored once it exited).
    pub fn write_line(&self, id: WorkId, line: Vec<u8>) {
        if let Some(r) = lock(&self.running).get(&id) {
            let _ = r.stdin.send(line);
        }
    }

    /// Kill `id` if it is one of ours and still running; its exit is still reported.
    /// Returns whether it was one of ours.
    pub fn kill(&self, id: WorkId) -> bool {
        let child = lock(&self.running).get(&id).map(|r| r.child.clone());
        if let Some(child) = &child {
            let _ = lock(child).kill();
        }
        child.is_some()
    }

    /// Kill every child (the gateway is stopping).
    pub fn shutdown(&self) {
        let ids: Vec<WorkId> = lock(&self.running).keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }
}

fn write_lines(mut stdin: ChildStdin, queue: mpsc::Receiver<Vec<u8>>) {
    for mut line in queue {
        line.push(b'\n');
        if stdin.write_all(&line).and_then(|()| stdin.flush()).is_err() {
            return;
        }
    }
}

/// Hand every line of `input` to `each`, cut at [`MAX_LINE_BYTES`].
fn read_lines(input: impl Read, mut each: impl FnMut(Vec<u8>)) {
    let mut reader = BufReader::with_capacity(64 * 1024, input);
    let mut line = Vec::new();
    let mut overflow = false;
    loop {
        let (used, done) = match reader.fill_buf() {
            Ok([]) | Err(_) => break,
            Ok(buf) => match buf.iter().position(|b| *b == b'\n') {
                Some(at) => {
                    take(&mut line, &buf[..at], &mut overflow);
                    (at + 1, true)
                }
                None => {
                    take(&mut line, buf, &mut overflow);
                    (buf.len(), false)
                }
            },
        };
        reader.consume(used);
        if done {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            each(std::mem::take(&mut line));
            overflow = false;
        }
    }
    if !line.is_empty() {
        each(line);
    }
}

fn take(line: &mut Vec<u8>, bytes: &[u8], overflow: &mut bool) {
    if *overflow {
        return;
    }
    let room = MAX_LINE_BYTES.saturating_sub(line.len());
    line.extend_from_slice(&bytes[..bytes.len().min(room)]);
    *overflow = bytes.len() > room;
}

fn log_stderr(stderr: impl Read, name: &str, log: &(dyn Fn(Level, String) + Send + Sync)) {
    for line in BufReader::new(stderr).split(b'\n').map_while(Result::ok) {
        let cut = &line[..line.len().min(MAX_STDERR_LINE)];
        let text = String::from_utf8_lossy(cut);
        log(
            Level::Info,
            format!("mcp stderr {name}: {}", text.trim_end()),
        );
    }
}

/// Wait for `child` to exit without holding its lock (so a kill can take it).
fn wait(child: &Mutex<Child>) -> String {
    loop {
        match lock(child).try_wait() {
            Ok(Some(status)) => return format!("exited ({status})"),
            Ok(None) => {}
            Err(e) => return format!("wait failed: {e}"),
        }
        thread::sleep(EXIT_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::Receiver;

    fn workers() -> (ProcessWorkers, Receiver<(WorkId, WorkResult)>) {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let w = ProcessWorkers::new(
            move |id, r| {
                let _ = lock(&tx).send((id, r));
            },
            |_, _| {},
        );
        (w, rx)
    }

    fn spec(command: &str, args: &[&str]) -> ProcessSpec {
        ProcessSpec {
            command: command.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec![("GREETING".into(), "hi".into())],
            cwd: Some("/".into()),
        }
    }

    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn lines_go_in_and_out_and_the_exit_ends_it() {
        let (w, rx) = workers();
        let id = WorkId(1);
        w.spawn(
            id,
            spec("sh", &["-c", "echo $GREETING; pwd; read x; echo got $x"]),
        );
        w.write_line(id, b"there".to_vec());
        let mut lines = Vec::new();
        loop {
            match rx.recv_timeout(WAIT).unwrap() {
                (_, WorkResult::ProcessLine(l)) => lines.push(String::from_utf8(l).unwrap()),
                (got, WorkResult::ProcessExited(how)) => {
                    assert_eq!(got, id);
                    assert!(how.contains("exit status: 0"), "{how}");
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(lines, ["hi", "/", "got there"]);
    }

    #[test]
    fn kill_ends_a_child_and_a_missing_command_is_an_exit() {
        let (w, rx) = workers();
        w.spawn(WorkId(2), spec("sleep", &["30"]));
        assert!(w.kill(WorkId(2)));
        let (_, r) = rx.recv_timeout(WAIT).unwrap();
        assert!(matches!(r, WorkResult::ProcessExited(how) if how.contains("signal")));
        assert!(!w.kill(WorkId(2)), "forgotten once exited");
        w.spawn(WorkId(3), spec("/no/such/program", &[]));
        let (_, r) = rx.recv_timeout(WAIT).unwrap();
        assert!(matches!(r, WorkResult::ProcessExited(how) if how.starts_with("cannot start")));
    }

    #[test]
    fn long_lines_are_cut() {
        let mut got = Vec::new();
        let mut input = vec![b'a'; MAX_LINE_BYTES + 10];
        input.extend_from_slice(b"\nshort\r\ntail");
        read_lines(&input[..], |l| got.push(l.len()));
        assert_eq!(got, [MAX_LINE_BYTES, 5, 4]);
    }
}
