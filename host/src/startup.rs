//! Start-up and the parts of running that every shell shares: flags → configuration →
//! state directory (0700) → instance lock → pairing store, chat sessions and the writer thread → listener →
//! [`Gateway`], and then [`RunHost`], the [`Host`] of `gateway run`: logs, persistence, signals
//! and reload.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clawgate_core::{
    Config, FileError, Gateway, Level, LogRecord, Output, Work, WorkId, WorkResult,
};
use clawgate_store::{DbError, IDLE_RELEASE, LINGER, StoreDone, Synchronous, WriteDone, Writer};

use crate::allocator::{self, AfterBurst};
use crate::code_pages;
use crate::discovery::{AdvertiserHandle, MdnsResponder, RetryPolicy, spawn_advertiser_with};
use crate::entropy::OsEntropy;
use crate::exec_worker::ExecWorkers;
use crate::file_worker::{FILE_THREADS, FileWorkers};
use crate::http_loop::HttpLimits;
use crate::http_loop::HttpLoop;
use crate::listen::{self, BindError};
use crate::lock::{self, InstanceLock, LockError};
use crate::logging::{self, Logger};
use crate::process_worker::ProcessWorkers;
use crate::run_args::{self, RunArgs, USAGE, UsageError};
use crate::settings::{self, SettingsError};
use crate::shell::{self, Host};
use crate::signals::Signals;
use crate::store::{self, open_store};
use crate::worker::WorkerQueue;
use crate::{paths, rlimit};

/// Exit status of a refused configuration (`EX_CONFIG`).
pub const EXIT_CONFIG: i32 = 78;
/// Exit status of a usage error.
pub const EXIT_USAGE: i32 = 2;
/// Exit status of any other start-up failure.
pub const EXIT_FAILURE: i32 = 1;
/// How long stopping waits for the mDNS advertiser to unregister, so that with the sockets'
/// [`crate::sockets::SHUTDOWN_GRACE`] a stop stays under a second.
pub const MDNS_STOP_GRACE: Duration = Duration::from_millis(250);

/// Why the gateway did not start.
#[derive(Debug)]
pub enum StartError {
    /// `--help` was asked for (not an error: exit 0).
    Help,
    /// The command line is wrong.
    Usage(UsageError),
    /// The configuration is refused.
    Settings(SettingsError),
    /// The state directory cannot be created.
    StateDir(PathBuf, std::io::Error),
    /// Another instance holds the lock.
    Lock(LockError),
    /// The pairing store or the chat sessions cannot be read.
    Store(DbError),
    /// The signal handlers cannot be installed.
    Signals(std::io::Error),
    /// The store writer thread cannot be started.
    StoreWriter(std::io::Error),
    /// The poller of outbound HTTP on the loop cannot be created.
    HttpPoller(std::io::Error),
    /// The listener cannot be opened.
    Bind(BindError),
}

impl StartError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Help => 0,
            StartError::Usage(_) => EXIT_USAGE,
            StartError::Settings(_) => EXIT_CONFIG,
            _ => EXIT_FAILURE,
        }
    }

    /// Print what the user needs to read: help on stdout, anything else one line on stderr.
    pub fn report(&self) {
        match self {
            StartError::Help => print!("{USAGE}"),
            StartError::Usage(e) => {
                eprintln!("clawgate gateway run: {e}\nTry 'clawgate gateway run --help'.")
            }
            // The core's refusals are printed exactly, as upstream prints them.
            StartError::Settings(e) => eprintln!("{e}"),
            other => eprintln!("clawgate: {other}"),
        }
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Help => f.write_str("help"),
            StartError::Usage(e) => write!(f, "{e}"),
            StartError::Settings(e) => write!(f, "{e}"),
            StartError::StateDir(p, e) => {
                write!(f, "cannot create state directory {}: {e}", p.display())
            }
            StartError::Lock(e) => write!(f, "{e}"),
            StartError::Store(e) => write!(f, "cannot open the store: {e}"),
            StartError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
            StartError::StoreWriter(e) => write!(f, "cannot start the store writer: {e}"),
            StartError::HttpPoller(e) => write!(f, "cannot create the HTTP poller: {e}"),
            StartError::Bind(e) => write!(f, "{e}"),
        }
    }
}

/// A started gateway: the core, its listener, and the host-side state every shell shares.
pub struct Started {
    /// The gateway state machine.
    pub gateway: Gateway,
    /// The listening socket (nonblocking).
    pub listener: TcpListener,
    /// The address it listens on.
    pub local_addr: SocketAddr,
    /// Logs, persistence, signals and reload.
    pub host: RunHost,
}

/// What the host's worker threads report to the loop.
#[derive(Debug)]
pub enum HostInput {
    /// The store writer wrote a batch, or failed to.
    Stored(WriteDone),
    /// A worker reports on other work: a file, exec or
    /// process worker on its job, the store on a [`Work::ReadHistory`].
    Work(WorkId, WorkResult),
}

/// Bytes the loop transmits that count as one work item of [`AfterBurst`]: 64 of them, a
/// burst, make 1 MiB (a flood of large answers, which frees what it allocated but never
/// touches a worker), while an idle gateway's ticks to its clients only ride on wake-ups the
/// loop has anyway.
const TRANSMITTED_PER_WORK: usize = 16 * 1024;

/// The [`Host`] of `gateway run`: what a running gateway needs besides its sockets.
pub struct RunHost {
    args: RunArgs,
    logger: Logger,
    signals: Signals,
    inbox: WorkerQueue<HostInput>,
    store: Option<Writer>,
    /// Outbound HTTP and the channels' WebSockets, performed on the loop.
    http_loop: HttpLoop,
    files: FileWorkers,
    execs: ExecWorkers,
    processes: ProcessWorkers,
    /// When to hand memory freed by a burst of work back to the kernel.
    trim: AfterBurst,
    /// Start-up's code pages are still mapped: unmapped with the first trim
    /// ([`code_pages::release_start_up_code`]).
    start_up_code: bool,
    /// Bytes transmitted not yet counted as work ([`TRANSMITTED_PER_WORK`]).
    transmitted: usize,
    mdns: Option<AdvertiserHandle>,
    /// `openclaw.json`, which [`Work::EditConfig`] changes.
    config_path: PathBuf,
    _lock: InstanceLock,
}

/// Start: every step that can refuse happens here, in the order that keeps a refused
/// configuration from ever opening a listener. `args` follow `gateway run`.
pub fn start(args: Vec<OsString>) -> Result<Started, StartError> {
    let args = run_args::parse_run_args(args).map_err(StartError::Usage)?;
    if args.help {
        return Err(StartError::Help);
    }
    // Before the first worker thread: a thread keeps the arena it first allocated from.
    allocator::limit_arenas();
    let env = paths::env_map();
    let mut logger = Logger::stderr(logging::level(&args, &env));
    let (mut config, sources) = resolve(&args, env, &logger)?;
    let state_dir = sources.state_dir;
    store::ensure_private_dir(&state_dir)
        .map_err(|e| StartError::StateDir(state_dir.clone(), e))?;
    let addr = SocketAddr::new(config.bind_host, config.port);
    let who = format!("pid {}, port {}", std::process::id(), config.port);
    let lock = lock::acquire(&paths::lock_file(&state_dir), &who).map_err(StartError::Lock)?;
    let store::Opened {
        mut db,
        pairing,
        identity,
        migrated,
        upstream,
    } = open_store(&state_dir).map_err(StartError::Store)?;
    store_synchronous(&mut db, &mut logger).map_err(StartError::Store)?;
    // Only the newest message of each transcript: a turn reads its window when it needs it.
    let sessions = db.load_sessions(1).map_err(StartError::Store)?;
    let channel_rows = db.load_channel_rows().map_err(StartError::Store)?;
    let pending_input = db.load_pending_input().map_err(StartError::Store)?;
    db.release_cache().map_err(StartError::Store)?;
    let log_path = paths::log_file(&state_dir);
    if let Err(e) = logger.open_file(&log_path) {
        logger.log(
            Level::Warn,
            format!(
                "cannot open log file {}: {e}; logging to stderr only",
                log_path.display()
            ),
        );
    }
    match rlimit::raise_nofile() {
        Ok(Some(n)) => logger.log(Level::Debug, format!("open file limit {n}")),
        Ok(None) => logger.log(Level::Debug, "open file limit unlimited"),
        Err(e) => logger.log(
            Level::Warn,
            format!("cannot raise the open file limit: {e}"),
        ),
    }
    let signals = Signals::install().map_err(StartError::Signals)?;
    let listener = listen::bind(addr).map_err(StartError::Bind)?;
    let local_addr = listener.local_addr().unwrap_or(addr);
    // With `--port 0` the port is the one the listener got, for hello-ok and mDNS alike.
    config.port = local_addr.port();
    logger.log(
        Level::Info,
        format!(
            "clawgate {} starting (pid {}), state dir {}",
            config.version,
            std::process::id(),
            state_dir.display()
        ),
    );
    if let Some(m) = migrated {
        logger.log(
            Level::Info,
            format!(
                "moved {} paired device(s) and {} pending request(s) from {} into {}; the old file is kept with .migrated appended",
                m.devices,
                m.pending,
                m.from.display(),
                db.path().display()
            ),
        );
    }
    match upstream {
        Some(Ok(up)) => logger.log(
            Level::Info,
            format!(
                "imported from upstream's {} (schema {}): {}",
                up.path.display(),
                up.schema_version,
                up.summary()
            ),
        ),
        Some(Err(e)) => logger.log(
            Level::Warn,
            format!("upstream state not imported: {e}; starting without it"),
        ),
        None => {}
    }
    let inbox: WorkerQueue<HostInput> = WorkerQueue::new();
    let acks = inbox.sender();
    // A transaction's outcomes reach the loop together: one wake-up per commit. Once the
    // store has been idle, its freed page cache goes back to the system from its own thread.
    let on_done = move |group: Vec<StoreDone>| {
        acks.send_all(group.into_iter().map(|done| match done {
            StoreDone::Written(done) => HostInput::Stored(done),
            StoreDone::Read(id, page) => {
                HostInput::Work(id, WorkResult::History(page.map_err(|e| e.to_string())))
            }
        }))
    };
    let released = || {
        allocator::release_free_memory();
    };
    let store = Writer::spawn_with_idle(db, on_done, IDLE_RELEASE, released)
        .map_err(StartError::StoreWriter)?;
    // The core bounds model requests and channel sends: no thread bound applies here.
    let http_loop = HttpLoop::new(HttpLimits::default()).map_err(StartError::HttpPoller)?;
    let reads = inbox.sender();
    let files = FileWorkers::new(FILE_THREADS, move |id, result| {
        reads.send(HostInput::Work(id, result))
    });
    let ran = inbox.sender();
    let execs = ExecWorkers::new(move |id, result| ran.send(HostInput::Work(id, result)));
    let lines = inbox.sender();
    let stderr = logger.sink();
    let processes = ProcessWorkers::new(
        move |id, result| lines.send(HostInput::Work(id, result)),
        move |level, line| stderr.log(level, line),
    );
    let mut gateway = Gateway::new(
        config,
        Box::new(OsEntropy::default()),
        pairing,
        Instant::now(),
        logging::unix_ms(),
    );
    gateway.set_identity(identity.key());
    gateway.restore_sessions(sessions);
    gateway.restore_channels(channel_rows);
    gateway.restore_pending_input(pending_input);
    let mut host = RunHost {
        args,
        logger,
        signals,
        inbox,
        store: Some(store),
        http_loop,
        files,
        execs,
        processes,
        trim: AfterBurst::default(),
        start_up_code: true,
        transmitted: 0,
        mdns: None,
        config_path: sources.config_path,
        _lock: lock,
    };
    // Nothing but log records can be pending before the first connection.
    while let Some(output) =
        Some(gateway.poll_output()).filter(|o| !matches!(o, Output::Timeout(_)))
    {
        shell::absorb(&mut host, &mut gateway, Instant::now(), output);
    }
    host.trim.started();
    host.logger
        .log(Level::Info, format!("listening on ws://{local_addr}"));
    log_control_ui(&mut host.logger, gateway.config(), local_addr);
    host.mdns = clawgate_core::discovery::advert(gateway.config()).map(|advert| {
        let sink = host.logger.sink();
        let policy = RetryPolicy {
            shutdown_grace: MDNS_STOP_GRACE,
            ..RetryPolicy::default()
        };
        spawn_advertiser_with(
            MdnsResponder::new(),
            advert,
            move |line| sink.log(Level::Info, line),
            policy,
        )
    });
    Ok(Started {
        gateway,
        listener,
        local_addr,
        host,
    })
}

/// Say where the Control UI is served from, or why it is not.
fn log_control_ui(logger: &mut Logger, config: &Config, local_addr: SocketAddr) {
    let ui = &config.control_ui;
    let message = match (&ui.root, ui.enabled) {
        (_, false) => "control ui: disabled (gateway.controlUi.enabled is false)".to_string(),
        (clawgate_core::config::UiRoot::Missing, true) => {
            "control ui: no openclaw package found; set gateway.controlUi.root to its dist/control-ui folder".to_string()
        }
        (root, true) => format!(
            "control ui: http://{local_addr}{}/ from {}",
            ui.base_path,
            root.path().unwrap_or_default()
        ),
    };
    logger.log(Level::Info, message);
}

/// Resolve the configuration; frames are logged when the logger shows trace records.
fn resolve(
    args: &RunArgs,
    env: BTreeMap<String, String>,
    logger: &Logger,
) -> Result<(Config, settings::Sources), StartError> {
    let (mut config, sources) = settings::resolve(env, args.flags(), args.password_file.as_deref())
        .map_err(StartError::Settings)?;
    config.log_frames = logger.enabled(Level::Trace);
    config.log_level = logger.level();
    Ok((config, sources))
}

/// The environment variable that chooses how store commits reach the disk.
pub const STORE_SYNC_ENV: &str = "CLAWGATE_STORE_SYNCHRONOUS";

/// Apply [`STORE_SYNC_ENV`]: `full` (the default) or `normal`; another value is named in a
/// warning and the default kept.
fn store_synchronous(db: &mut clawgate_store::Db, logger: &mut Logger) -> Result<(), DbError> {
    let Some(value) = paths::env_map().remove(STORE_SYNC_ENV) else {
        return Ok(());
    };
    match Synchronous::parse(&value) {
        Some(mode) => {
            if mode == Synchronous::Normal {
                logger.log(
                    Level::Info,
                    format!("{STORE_SYNC_ENV}=normal: store commits are not fsynced (kill -9 safe, not power-loss safe)"),
                );
            }
            db.set_synchronous(mode)
        }
        None => {
            logger.log(
                Level::Warn,
                format!("{STORE_SYNC_ENV}={value:?} is neither full nor normal; keeping full"),
            );
            Ok(())
        }
    }
}

impl RunHost {
    /// The logger, for the shell's own events.
    pub fn logger(&mut self) -> &mut Logger {
        &mut self.logger
    }

    /// Re-read the config file and environment with the same flags and apply them; a refused
    /// configuration is logged and the one in force kept.
    pub fn reload(&mut self, gw: &mut Gateway, now: Instant) {
        match resolve(&self.args, paths::env_map(), &self.logger) {
            Ok((mut config, _)) => {
                let (host, port) = (gw.config().bind_host, gw.config().port);
                // Port 0 asks for any port: the one the listener got still answers it.
                let same_port = config.port == port || config.port == 0;
                if config.bind_host != host || !same_port {
                    self.logger.log(
                        Level::Warn,
                        format!(
                            "bind {}:{} needs a restart; still listening on {host}:{port}",
                            config.bind_host, config.port
                        ),
                    );
                }
                // The configuration describes the listener that is really open.
                (config.bind_host, config.port) = (host, port);
                gw.reload(now, config);
            }
            Err(e) => self.logger.log(
                Level::Error,
                format!("config reload refused, keeping the running configuration: {e}"),
            ),
        }
    }
}

impl Host for RunHost {
    type Input = HostInput;

    fn log(&mut self, record: &LogRecord) {
        self.logger.record(record);
    }

    fn flush_log(&mut self) {
        self.logger.flush();
    }

    /// Log lines held back long enough are written, and the memory a burst of work freed is
    /// returned once the loop has been quiet ([`allocator::AfterBurst`]); the first time (start-up
    /// counts as a burst), start-up's code pages are unmapped too ([`code_pages`]); store
    /// batches held for a follow-up that did not come are handed to the writer.
    fn before_wait(&mut self, now: Instant) -> Option<Instant> {
        let (trim, wake) = self.trim.due(now);
        if trim {
            let returned = allocator::release_free_memory();
            self.logger.log(
                Level::Debug,
                format!("memory: returned freed pages to the system after work (any: {returned})"),
            );
            if std::mem::take(&mut self.start_up_code) {
                let unmapped = code_pages::release_start_up_code();
                self.logger.log(
                    Level::Debug,
                    format!("memory: unmapped start-up's code pages ({unmapped} bytes advised)"),
                );
            }
        }
        // A message's batch held for its answer's goes alone once its bound has passed.
        let store = self.store.as_ref().and_then(|w| {
            for id in w.flush_due(now) {
                let gone = WorkResult::Stored(Err("the store writer is gone".into()));
                self.inbox.sender().send(HostInput::Work(id, gone));
            }
            w.due()
        });
        [self.logger.flush_due(now), wake, store]
            .into_iter()
            .flatten()
            .min()
    }

    fn transmitted(&mut self, bytes: usize) {
        self.transmitted = self.transmitted.saturating_add(bytes);
        while self.transmitted >= TRANSMITTED_PER_WORK {
            self.transmitted -= TRANSMITTED_PER_WORK;
            self.trim.work();
        }
    }

    fn work(&mut self, id: WorkId, work: Work) -> Option<WorkResult> {
        self.trim.work();
        match work {
            Work::Store { changes, linger } => {
                let queued = self.store.as_ref().is_some_and(|w| {
                    if linger {
                        w.submit_lingering(id, changes, LINGER)
                    } else {
                        w.submit(id, changes)
                    }
                });
                // The writer thread is gone only if it panicked: say so to whoever waits.
                (!queued).then(|| WorkResult::Stored(Err("the store writer is gone".into())))
            }
            Work::Http(request) => {
                self.http_loop.start(id, request, Instant::now());
                None
            }
            Work::Cancel(of) => {
                if !self.processes.kill(of) && !self.http_loop.cancel(of) {
                    self.execs.cancel(of);
                }
                None
            }
            Work::Exec(request) => {
                self.execs.submit(id, request);
                None
            }
            Work::Spawn(spec) => {
                self.processes.spawn(id, spec);
                None
            }
            Work::WriteLine { process, line } => {
                self.processes.write_line(process, line);
                None
            }
            Work::ReadHistory(query) => {
                let queued = self.store.as_ref().is_some_and(|w| w.read(id, query));
                (!queued).then(|| WorkResult::History(Err("the store writer is gone".into())))
            }
            Work::ReadFile(read) => (!self.files.submit(id, read))
                .then(|| WorkResult::File(Err(FileError::Io("no file reader runs".into())))),
            Work::WsOpen(open) => {
                self.http_loop.ws_open(id, open, Instant::now());
                None
            }
            Work::WsSend { socket, text } => {
                self.http_loop.ws_send(socket, text);
                None
            }
            Work::WsClose { socket, code } => {
                self.http_loop.ws_close(socket, code, Instant::now());
                None
            }
            Work::EditConfig(change) => {
                (!self.files.edit_config(id, self.config_path.clone(), change))
                    .then(|| WorkResult::ConfigEdited(Err("no file worker runs".into())))
            }
            Work::DescribeMachine => (!self.files.describe_machine(id))
                .then(|| WorkResult::Machine(clawgate_core::MachineInfo::default())),
            other => {
                self.logger
                    .log(Level::Warn, format!("unhandled work {other:?}"));
                None
            }
        }
    }

    fn signals(&self) -> Option<&UnixStream> {
        Some(self.signals.reader())
    }

    /// Shut the gateway down on SIGTERM/SIGINT, reload it on SIGHUP. The loop then drains
    /// outputs and, once [`Gateway::is_draining`], winds down.
    fn on_signals(&mut self, gw: &mut Gateway, now: Instant) {
        let pending = self.signals.take();
        if pending.reload && !pending.terminate {
            self.reload(gw, now);
        }
        if pending.terminate && !gw.is_draining() {
            self.logger
                .log(Level::Info, "signal received, shutting down");
            gw.shutdown(now);
        }
    }

    fn sockets(&self) -> Option<BorrowedFd<'_>> {
        Some(self.http_loop.fd())
    }

    fn sockets_due(&self) -> Option<Instant> {
        self.http_loop.due()
    }

    fn on_sockets(&mut self, gw: &mut Gateway, now: Instant) {
        self.trim.work();
        self.http_loop
            .drive(now, |id, result| gw.handle_work_result(now, id, result));
    }

    fn inbox(&self) -> &WorkerQueue<HostInput> {
        &self.inbox
    }

    fn on_worker_input(&mut self, gw: &mut Gateway, now: Instant, input: HostInput) {
        self.trim.work();
        match input {
            HostInput::Stored(done) => {
                let result = done.result.map_err(|e| e.to_string());
                gw.handle_work_result(now, done.id, WorkResult::Stored(result));
            }
            HostInput::Work(id, result) => gw.handle_work_result(now, id, result),
        }
    }

    /// Stop advertising over mDNS (waits at most [`MDNS_STOP_GRACE`]).
    fn on_draining(&mut self) {
        if let Some(mdns) = self.mdns.take()
            && !mdns.shutdown()
        {
            self.logger
                .log(Level::Debug, "mDNS: advertiser still unregistering at exit");
        }
    }

    /// Drop the HTTP requests (a lookup still under way is left to its thread), wait for
    /// the store writer to write what is queued, and log what failed.
    fn on_stopped(&mut self) {
        self.http_loop.shutdown();
        self.files.shutdown();
        self.execs.shutdown();
        self.processes.shutdown();
        if let Some(writer) = self.store.take() {
            writer.close();
        }
        for input in self.inbox.take() {
            if let HostInput::Stored(WriteDone { result: Err(e), .. }) = input {
                self.logger
                    .log(Level::Error, format!("store write failed at exit: {e}"));
            }
        }
    }
}
