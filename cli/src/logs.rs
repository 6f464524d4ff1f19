//! `clawgate logs [-f] [--lines N]`: the tail of the gateway's log file, and following it
//! across truncation and rotation; with `--url`, the log of a gateway elsewhere, over its
//! `logs.tail` method.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::args::{self, Opt, Parsed, QUERY};
use super::rpc::{self, DEFAULT_TIMEOUT_MS};
use super::{Failure, Outcome, scopes};

const USAGE: &str = "clawgate logs [-f|--follow] [-n|--lines N] [--url ws://HOST:PORT [--token T | --password P] [--timeout MS]]";
/// Lines shown when `--lines` is not given.
const DEFAULT_LINES: u64 = 200;
/// How often `--follow` looks for new lines in the file.
const POLL: Duration = Duration::from_millis(250);
/// How often `--follow --url` asks the gateway for new lines.
const REMOTE_POLL: Duration = Duration::from_millis(1_000);
/// `maxBytes` of each `logs.tail` call, as upstream's CLI.
const REMOTE_MAX_BYTES: u64 = 250_000;

/// `logs`.
pub fn run(argv: Vec<OsString>) -> Outcome {
    let p = args::parse(
        argv,
        QUERY,
        &[
            Opt::switch("follow").short('f'),
            Opt::value("lines").short('n'),
        ],
    )?;
    p.expect_positionals(0, USAGE)?;
    let lines = p.number("lines")?.unwrap_or(DEFAULT_LINES);
    if p.value("url").is_some() {
        return remote(&p, lines);
    }
    if p.switch("json")
        || ["token", "password", "timeout"]
            .iter()
            .any(|o| p.value(o).is_some())
    {
        return Err(Failure::usage(format!(
            "--token, --password, --timeout and --json go with --url (the log of a gateway elsewhere)\nusage: {USAGE}"
        )));
    }
    let path = clawgate_host::paths::log_file(&clawgate_host::paths::state_dir(
        &clawgate_host::paths::env_map(),
    ));
    let mut out = io::stdout().lock();
    let io_err = |e: io::Error| Failure::failed(format!("cannot read {}: {e}", path.display()));
    // The reader went away (`clawgate logs -f | head`): that ends the command, it is no error.
    let ended = |r: io::Result<()>| match r {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(io_err),
    };
    let file = match File::open(&path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(e)),
    };
    let Some(mut file) = file else {
        let missing = format!(
            "no gateway log at {}; the gateway writes it while it runs (`clawgate gateway run`, or `clawgate gateway start` for the service)",
            path.display()
        );
        if !p.switch("follow") {
            return Err(Failure::failed(missing));
        }
        eprintln!("clawgate: {missing}; waiting for it");
        return ended(follow(&path, None, 0, &mut out));
    };
    let pos = match tail(&mut file, lines, &mut out) {
        Ok(pos) => pos,
        Err(e) => return ended(Err(e)),
    };
    if p.switch("follow") {
        let ino = file.metadata().map_err(io_err)?.ino();
        ended(follow(&path, Some((file, ino)), pos, &mut out))?;
    }
    Ok(())
}

/// `logs --url`: the last lines from `logs.tail`, and with `-f` the new ones every second.
fn remote(p: &Parsed, lines: u64) -> Outcome {
    let timeout = Duration::from_millis(p.millis("timeout")?.unwrap_or(DEFAULT_TIMEOUT_MS));
    let mut open = rpc::open(p, scopes::for_method("logs.tail"), DEFAULT_TIMEOUT_MS)?;
    let params = json!({"limit": lines.min(5_000), "maxBytes": REMOTE_MAX_BYTES});
    let first = open.call("logs.tail", Some(params))?;
    let mut cursor = first.get("cursor").and_then(Value::as_u64).unwrap_or(0);
    print_lines(p, &first, usize::MAX);
    while p.switch("follow") {
        std::thread::sleep(REMOTE_POLL);
        open.session.extend_deadline(timeout);
        // Ask for as much as the gateway keeps: more may have been logged than `--lines`.
        let more = json!({"limit": 5_000, "maxBytes": REMOTE_MAX_BYTES});
        let next = open.call("logs.tail", Some(more))?;
        let now = next.get("cursor").and_then(Value::as_u64).unwrap_or(cursor);
        // The cursor counts bytes logged (each line plus a newline): print what is new.
        print_lines(p, &next, now.saturating_sub(cursor) as usize);
        cursor = now;
    }
    open.session.close();
    Ok(())
}

/// Print the last lines of a `logs.tail` result that add up to at most `new_bytes`.
fn print_lines(p: &Parsed, result: &Value, new_bytes: usize) {
    let all: Vec<&str> = result
        .get("lines")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut budget = new_bytes;
    let fresh = all
        .iter()
        .rev()
        .take_while(|l| {
            let fits = l.len() < budget;
            budget = budget.saturating_sub(l.len() + 1);
            fits
        })
        .count();
    for line in all.get(all.len() - fresh..).unwrap_or_default() {
        let parsed = serde_json::from_str::<Value>(line)
            .ok()
            .filter(Value::is_object);
        match (p.switch("json"), parsed) {
            (true, Some(v)) => say!(
                "{}",
                json!({"type": "log", "time": v["time"], "level": v["level"],
                    "subsystem": v["subsystem"], "message": v["message"], "raw": line})
            ),
            (true, None) => say!("{}", json!({"type": "raw", "raw": line})),
            (false, Some(v)) => say!("{}", plain(&v).unwrap_or_else(|| line.to_string())),
            (false, None) => say!("{line}"),
        }
    }
}

/// A JSON log line as upstream's `openclaw logs` prints it plain: time, level, subsystem and
/// message, the ones present, separated by spaces.
fn plain(v: &Value) -> Option<String> {
    let fields: Vec<&str> = ["time", "level", "subsystem", "message"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(Value::as_str))
        .filter(|f| !f.is_empty())
        .collect();
    (!fields.is_empty()).then(|| fields.join(" "))
}

/// Write the last `n` lines of `file` to `out`; returns the offset read up to.
pub fn tail(file: &mut File, n: u64, out: &mut impl Write) -> io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let end = file.seek(SeekFrom::End(0))?;
    let mut start = end;
    let mut newlines = 0u64;
    let mut buf = Vec::new();
    // Walk back a chunk at a time until n+1 newlines (the last line may end in one) are seen.
    while start > 0 && newlines <= n {
        let from = start.saturating_sub(CHUNK);
        let mut chunk = vec![0u8; (start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut chunk)?;
        newlines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        start = from;
    }
    // Newlines inside the text (not the one ending the last line): the last n lines start
    // after the n-th of them counted from the end.
    let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
    let newline_at: Vec<usize> = body
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i)
        .collect();
    let first = match n {
        0 => buf.len(),
        n => newline_at
            .len()
            .checked_sub(n as usize)
            .and_then(|k| newline_at.get(k))
            .map_or(0, |i| i + 1),
    };
    out.write_all(buf.get(first..).unwrap_or(&[]))?;
    out.flush()?;
    Ok(end)
}

/// Print what is appended to `path` from `pos` on, forever; a file that shrinks (truncated)
/// is read again from its start, a file replaced by another (rotated) is reopened.
fn follow(
    path: &Path,
    mut current: Option<(File, u64)>,
    mut pos: u64,
    out: &mut impl Write,
) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match std::fs::metadata(path) {
            Ok(meta) => {
                let replaced = current.as_ref().is_none_or(|(_, ino)| *ino != meta.ino());
                if replaced {
                    current = Some((File::open(path)?, meta.ino()));
                    pos = 0;
                } else if meta.len() < pos {
                    pos = 0;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Some((file, _)) = current.as_mut() {
            file.seek(SeekFrom::Start(pos))?;
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                out.write_all(buf.get(..n).unwrap_or(&[]))?;
                pos += n as u64;
            }
            out.flush()?;
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawgate_tests::tempdir::TempDir;

    fn tail_of(content: &str, n: u64) -> String {
        let dir = TempDir::new("logs");
        let p = dir.path().join("log");
        std::fs::write(&p, content).unwrap();
        let mut out = Vec::new();
        let end = tail(&mut File::open(&p).unwrap(), n, &mut out).unwrap();
        assert_eq!(end, content.len() as u64);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn tails_the_last_lines() {
        assert_eq!(tail_of("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail_of("a\nb\nc\n", 3), "a\nb\nc\n");
        assert_eq!(tail_of("a\nb\nc\n", 10), "a\nb\nc\n");
        assert_eq!(tail_of("a\nb\nc", 1), "c");
        assert_eq!(tail_of("a\nb\nc", 2), "b\nc");
        assert_eq!(tail_of("a\nb\nc\n", 0), "");
        assert_eq!(tail_of("", 5), "");
        let big: String = (0..50_000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(tail_of(&big, 3), "line 49997\nline 49998\nline 49999\n");
        assert_eq!(tail_of(&big, 20_000).lines().count(), 20_000);
    }
}
