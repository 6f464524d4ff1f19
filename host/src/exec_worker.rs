//! Commands for the core's [`Work::Exec`](clawgate_core::Work::Exec) (the `exec` tool, once
//! policy allowed it): each runs as `sh -c` in its own process group on a thread of its
//! own, stdin empty, its output read and bounded, killed (the whole group) at its timeout
//! or when the core cancels it. The event loop never spawns or waits for a process.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clawgate_core::{ExecOutput, ExecRequest, WorkId, WorkResult};

/// How often a running command is checked for its end.
const POLL: Duration = Duration::from_millis(10);

/// Where results go: called on worker threads, must not block.
type Report = Arc<dyn Fn(WorkId, WorkResult) + Send + Sync>;

/// The commands running, by work id: their process group, and whether they were cancelled.
type Running = Arc<Mutex<HashMap<WorkId, (u32, bool)>>>;

/// The command threads.
pub struct ExecWorkers {
    report: Report,
    running: Running,
    threads: Vec<JoinHandle<()>>,
}

impl ExecWorkers {
    /// Workers that hand each result to `report`.
    pub fn new(report: impl Fn(WorkId, WorkResult) + Send + Sync + 'static) -> Self {
        Self {
            report: Arc::new(report),
            running: Arc::default(),
            threads: Vec::new(),
        }
    }

    /// Run `request` on a thread of its own; a command that cannot start is reported at once.
    pub fn submit(&mut self, id: WorkId, request: ExecRequest) {
        self.threads.retain(|t| !t.is_finished());
        let (report, running) = (self.report.clone(), self.running.clone());
        let spawned = std::thread::Builder::new()
            .name("clawgate-exec".into())
            .spawn(move || {
                let result = run(id, &request, &running);
                lock(&running).remove(&id);
                report(id, WorkResult::Exec(result));
            });
        match spawned {
            Ok(t) => self.threads.push(t),
            Err(e) => (self.report)(id, WorkResult::Exec(Err(format!("no thread: {e}")))),
        }
    }

    /// Kill the command of `id`, if it runs; its result (an error) still comes.
    pub fn cancel(&self, id: WorkId) {
        if let Some((pid, cancelled)) = lock(&self.running).get_mut(&id) {
            *cancelled = true;
            kill_group(*pid);
        }
    }

    /// Kill every command and wait for the threads.
    pub fn shutdown(&mut self) {
        for (pid, cancelled) in lock(&self.running).values_mut() {
            *cancelled = true;
            kill_group(*pid);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn lock(r: &Running) -> std::sync::MutexGuard<'_, HashMap<WorkId, (u32, bool)>> {
    r.lock().unwrap_or_else(|e| e.into_inner())
}

fn kill_group(pid: u32) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Read `from` to its end, keeping at most `max` bytes; the number of bytes dropped.
fn read_bounded(mut from: impl Read, max: usize) -> (Vec<u8>, usize) {
    let mut kept = Vec::new();
    let mut dropped = 0;
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return (kept, dropped),
            Ok(n) => {
                let room = max.saturating_sub(kept.len()).min(n);
                kept.extend_from_slice(&buf[..room]);
                dropped += n - room;
            }
        }
    }
}

fn spawn(request: &ExecRequest) -> io::Result<Child> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(&request.command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = &request.cwd {
        cmd.current_dir(dir);
    }
    cmd.spawn()
}

fn run(id: WorkId, request: &ExecRequest, running: &Running) -> Result<ExecOutput, String> {
    let started = Instant::now();
    let mut child = spawn(request).map_err(|e| e.to_string())?;
    lock(running).insert(id, (child.id(), false));
    let max = request.max_output_bytes;
    let stdout = child
        .stdout
        .take()
        .map(|o| std::thread::spawn(move || read_bounded(o, max)));
    let stderr = child
        .stderr
        .take()
        .map(|e| std::thread::spawn(move || read_bounded(e, max)));
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() >= request.timeout => {
                timed_out = true;
                kill_group(child.id());
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(_) => break None,
        }
    };
    // Whatever the group's other processes still hold open dies with the group.
    kill_group(child.id());
    let (out, out_dropped) = stdout.and_then(|t| t.join().ok()).unwrap_or_default();
    let (err, err_dropped) = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    if lock(running).get(&id).is_some_and(|(_, c)| *c) {
        return Err("cancelled".into());
    }
    let mut bytes = out;
    let room = max.saturating_sub(bytes.len());
    let mut dropped = out_dropped + err_dropped;
    dropped += err.len().saturating_sub(room);
    bytes.extend_from_slice(&err[..err.len().min(room)]);
    Ok(ExecOutput {
        exit_code: status.and_then(|s| s.code()),
        output: String::from_utf8_lossy(&bytes).into_owned(),
        truncated: dropped > 0,
        timed_out,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn exec(command: &str, timeout: Duration, max: usize) -> Result<ExecOutput, String> {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let mut w = ExecWorkers::new(move |_, r| {
            let _ = tx.lock().unwrap().send(r);
        });
        let request = ExecRequest {
            command: command.into(),
            cwd: None,
            timeout,
            max_output_bytes: max,
        };
        w.submit(WorkId(1), request);
        let r = rx.recv_timeout(Duration::from_secs(20)).expect("a result");
        w.shutdown();
        match r {
            WorkResult::Exec(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn runs_bounds_and_kills() {
        let ok = exec(
            "echo hi; echo oops >&2; exit 3",
            Duration::from_secs(10),
            1024,
        )
        .unwrap();
        assert_eq!(
            (ok.exit_code, ok.output.as_str(), ok.truncated),
            (Some(3), "hi\noops\n", false)
        );
        let big = exec("head -c 1000000 /dev/zero", Duration::from_secs(10), 100).unwrap();
        assert_eq!((big.output.len(), big.truncated), (100, true));
        let slow = exec("sleep 30 & sleep 30", Duration::from_millis(200), 100).unwrap();
        assert!(slow.timed_out && slow.duration_ms < 10_000, "{slow:?}");
    }
}
