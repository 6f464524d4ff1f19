//! File reads for the core's [`Work::ReadFile`](clawgate_core::Work::ReadFile) (the Control
//! UI's assets), on worker threads: the loop never opens, stats or reads a file. A read takes
//! the first candidate that is a regular file inside the root once symlinks are resolved, so
//! a symlink pointing out of the root is as good as absent. The same threads describe the
//! machine for `system.info` ([`Work::DescribeMachine`](clawgate_core::Work::DescribeMachine)):
//! reading `/proc` is file IO too. And they edit `openclaw.json`
//! ([`Work::EditConfig`](clawgate_core::Work::EditConfig), `channels.logout`).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::UNIX_EPOCH;

use clawgate_core::config::edit::ConfigEdit;
use clawgate_core::{FileChunk, FileError, FileRead, WorkId, WorkResult};

/// Threads reading files: enough that one slow disk read does not hold every other asset.
pub const FILE_THREADS: usize = 2;

/// Where results go: called on worker threads, must not block.
type Report = Arc<dyn Fn(WorkId, WorkResult) + Send + Sync>;

/// What a file thread is asked to do.
enum Job {
    Read(FileRead),
    DescribeMachine,
    EditConfig(PathBuf, ConfigEdit),
}

/// The file-reading threads and the queue that feeds them. The threads start with the first
/// job: a gateway that serves no Control UI asset and edits no file never has them (each
/// would keep its stack's pages).
pub struct FileWorkers {
    queue: Option<Sender<(WorkId, Job)>>,
    /// The queue's far end and where results go, for threads yet to start.
    jobs: Arc<Mutex<Receiver<(WorkId, Job)>>>,
    report: Report,
    /// How many threads the first job starts.
    wanted: usize,
    threads: Vec<JoinHandle<()>>,
}

impl FileWorkers {
    /// Readers (`threads` of them, started by the first job) that hand each result to `report`.
    pub fn new(
        threads: usize,
        report: impl Fn(WorkId, WorkResult) + Send + Sync + 'static,
    ) -> Self {
        let (queue, jobs) = mpsc::channel::<(WorkId, Job)>();
        Self {
            queue: Some(queue),
            jobs: Arc::new(Mutex::new(jobs)),
            report: Arc::new(report),
            wanted: threads.max(1),
            threads: Vec::new(),
        }
    }

    /// Queue a read; `false` when no reader runs (none could start, or they are gone).
    pub fn submit(&mut self, id: WorkId, read: FileRead) -> bool {
        self.queue(id, Job::Read(read))
    }

    /// Queue a description of the machine; `false` when no reader runs.
    pub fn describe_machine(&mut self, id: WorkId) -> bool {
        self.queue(id, Job::DescribeMachine)
    }

    /// Queue an edit of the configuration file at `path`; `false` when no reader runs.
    pub fn edit_config(&mut self, id: WorkId, path: PathBuf, change: ConfigEdit) -> bool {
        self.queue(id, Job::EditConfig(path, change))
    }

    fn queue(&mut self, id: WorkId, job: Job) -> bool {
        if self.queue.is_some() && self.threads.is_empty() {
            self.start();
        }
        !self.threads.is_empty()
            && self
                .queue
                .as_ref()
                .is_some_and(|q| q.send((id, job)).is_ok())
    }

    /// Start the readers, as many as the system allows; when it allowed none, the next job
    /// tries again.
    fn start(&mut self) {
        for n in self.threads.len()..self.wanted {
            let jobs = self.jobs.clone();
            let report = self.report.clone();
            match std::thread::Builder::new()
                .name(format!("clawgate-files-{n}"))
                .spawn(move || serve(&jobs, &*report))
            {
                Ok(handle) => self.threads.push(handle),
                Err(_) => break,
            }
        }
    }

    /// Stop taking reads and wait for the threads to finish the one they are on.
    pub fn shutdown(&mut self) {
        self.queue = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve(
    jobs: &Mutex<Receiver<(WorkId, Job)>>,
    report: &(dyn Fn(WorkId, WorkResult) + Send + Sync),
) {
    loop {
        // A reader that panicked while holding the lock left a whole queue behind.
        let next = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok((id, job)) = next else {
            return;
        };
        let result = match job {
            Job::Read(read) => WorkResult::File(read_file(&read)),
            Job::DescribeMachine => WorkResult::Machine(crate::machine::describe()),
            Job::EditConfig(path, change) => {
                WorkResult::ConfigEdited(crate::config_file::edit(&path, &change))
            }
        };
        report(id, result);
    }
}

/// Perform one [`FileRead`].
pub fn read_file(read: &FileRead) -> Result<FileChunk, FileError> {
    let root = match Path::new(&read.root).canonicalize() {
        Ok(root) => root,
        Err(e) => return Err(not_found_or(e)),
    };
    for (index, rel) in read.candidates.iter().enumerate() {
        let Some(path) = confined(&root, rel)? else {
            continue;
        };
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if is_absent(&e) => continue,
            Err(e) => return Err(FileError::Io(e.to_string())),
        };
        let meta = file.metadata().map_err(io_error)?;
        if !meta.is_file() {
            continue;
        }
        let modified_ms = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64);
        let size = meta.len();
        let mut data = Vec::new();
        if read.offset < size {
            file.seek(SeekFrom::Start(read.offset)).map_err(io_error)?;
            let want = (size - read.offset).min(read.max_len as u64);
            file.take(want).read_to_end(&mut data).map_err(io_error)?;
        }
        return Ok(FileChunk {
            index,
            size,
            modified_ms,
            data,
        });
    }
    Err(FileError::NotFound)
}

/// `rel` under `root` with symlinks resolved, if it exists and stays inside the root.
fn confined(root: &Path, rel: &str) -> Result<Option<PathBuf>, FileError> {
    if rel
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Ok(None);
    }
    match root.join(rel).canonicalize() {
        Ok(real) if real.starts_with(root) => Ok(Some(real)),
        Ok(_) => Ok(None),
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(FileError::Io(e.to_string())),
    }
}

fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::PermissionDenied
    ) || e.raw_os_error() == Some(40) // ELOOP
}

fn not_found_or(e: io::Error) -> FileError {
    if is_absent(&e) {
        FileError::NotFound
    } else {
        FileError::Io(e.to_string())
    }
}

fn io_error(e: io::Error) -> FileError {
    FileError::Io(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(
        root: &Path,
        candidates: &[&str],
        offset: u64,
        max_len: usize,
    ) -> Result<FileChunk, FileError> {
        read_file(&FileRead {
            root: root.display().to_string(),
            candidates: candidates.iter().map(|s| s.to_string()).collect(),
            offset,
            max_len,
        })
    }

    #[test]
    fn reads_inside_the_root_only() {
        let dir = std::env::temp_dir().join(format!("clawgate-files-{}", std::process::id()));
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("assets")).unwrap();
        std::fs::write(root.join("assets/a.js"), b"0123456789").unwrap();
        std::fs::write(dir.join("secret.txt"), b"secret").unwrap();
        std::os::unix::fs::symlink(dir.join("secret.txt"), root.join("out.txt")).unwrap();
        std::os::unix::fs::symlink(root.join("assets/a.js"), root.join("in.js")).unwrap();

        let chunk = read(&root, &["assets/a.js.br", "assets/a.js"], 4, 3).unwrap();
        assert_eq!(
            (chunk.index, chunk.size, chunk.data.as_slice()),
            (1, 10, &b"456"[..])
        );
        assert!(chunk.modified_ms > 0);
        assert_eq!(read(&root, &["in.js"], 0, 100).unwrap().data, b"0123456789");
        assert_eq!(read(&root, &["assets/a.js"], 10, 4).unwrap().data, b"");
        for absent in [
            "out.txt",
            "../secret.txt",
            "assets",
            "nope",
            "assets/a.js/x",
        ] {
            assert_eq!(
                read(&root, &[absent], 0, 10),
                Err(FileError::NotFound),
                "{absent}"
            );
        }
        assert_eq!(
            read(&dir.join("none"), &["a"], 0, 1),
            Err(FileError::NotFound)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn workers_report_each_read() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let mut workers = FileWorkers::new(2, move |id, r| {
            let _ = tx.lock().unwrap().send((id, r));
        });
        assert!(workers.threads.is_empty(), "no reader before the first job");
        assert!(workers.submit(
            WorkId(7),
            FileRead {
                root: "/nonexistent-clawgate".into(),
                candidates: vec!["x".into()],
                offset: 0,
                max_len: 1,
            }
        ));
        let (id, r) = rx.recv().unwrap();
        assert_eq!(
            (id, r),
            (WorkId(7), WorkResult::File(Err(FileError::NotFound)))
        );
        assert_eq!(workers.threads.len(), 2);
        workers.shutdown();
        assert!(!workers.describe_machine(WorkId(8)), "taken after shutdown");
    }
}
