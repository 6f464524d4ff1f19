//! The client side of `clawgate`: the commands that talk to a running gateway (`gateway
//! health|status|call|probe`, `devices`, `nodes`), look after its files (`doctor`, `logs`) and
//! its service (`gateway install|start|…`), and carry upstream's pairing over (`gateway
//! import-upstream`). Every command returns an [`Outcome`]; `main` prints
//! the failure and exits with its [`Exit`] code.
//!
//! A crate of its own so that it is built for size (`opt-level = "z"` in the workspace's
//! release profile): none of it runs inside the gateway, whose shells stay at `"s"`.
#![forbid(unsafe_code)]

/// `println!` that ignores a closed stdout (`clawgate … | head`) instead of panicking.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

pub mod args;
pub mod credentials;
pub mod devices;
pub mod doctor;
pub mod identity;
pub mod logs;
pub mod nodes;
pub mod output;
pub mod pairing;
pub mod probe;
pub mod query;
pub mod report;
pub mod rpc;
pub mod scopes;
pub mod service;
pub mod target;
pub mod upstream;

/// Process exit codes shared by every command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// A request failed or the gateway could not be reached.
    Failed = 1,
    /// The command line is wrong.
    Usage = 2,
    /// The configuration was refused.
    Config = 78,
}

/// Why a command failed: a message for people, optionally a JSON document for `--json`, and
/// the exit code.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub exit: Exit,
    /// What went wrong and what to do, for stderr.
    pub message: String,
    /// The machine-readable form, printed on stdout instead of the message under `--json`.
    pub json: Option<serde_json::Value>,
}

impl Failure {
    /// A failure with a message and no JSON form.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
            json: None,
        }
    }

    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    /// A failed request or check (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(Exit::Failed, message)
    }

    /// The same failure with a JSON form.
    pub fn with_json(mut self, json: serde_json::Value) -> Self {
        self.json = Some(json);
        self
    }
}

/// What a command ends with.
pub type Outcome = Result<(), Failure>;

/// Print a command's outcome and turn it into an exit code.
pub fn finish(outcome: Outcome) -> i32 {
    match outcome {
        Ok(()) => Exit::Ok as i32,
        Err(f) => {
            match &f.json {
                Some(doc) => output::print_json(doc),
                None => eprintln!("clawgate: {}", f.message),
            }
            f.exit as i32
        }
    }
}
