//! The flags of `clawgate gateway run`, parsed apart from running so that every shell
//! accepts exactly the same command line.

use std::ffi::OsString;
use std::path::PathBuf;

use clawgate_core::Level;
use clawgate_core::config::RunFlags;

/// What `clawgate gateway run --help` prints.
pub const USAGE: &str = "\
Usage: clawgate gateway run [options]

Run the gateway in the foreground.

Options:
  --port <port>            Port to listen on (default 18789)
  --bind <mode>            loopback | lan | tailnet | auto | custom
  --auth <mode>            none | token | password
  --token <token>          Shared token (or OPENCLAW_GATEWAY_TOKEN)
  --password <password>    Shared password (or OPENCLAW_GATEWAY_PASSWORD)
  --password-file <path>   Read the shared password from a file
  --log-level <level>      error | warn | info | debug | trace (default info, or RUST_LOG)
  --verbose                Log every frame in and out, secrets masked (trace)
  --allow-unconfigured     Accepted for compatibility: clawgate always starts in local mode
  -h, --help               Show this help
";

/// The parsed command line of `gateway run`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunArgs {
    /// `--port`.
    pub port: Option<String>,
    /// `--bind`.
    pub bind: Option<String>,
    /// `--auth`.
    pub auth: Option<String>,
    /// `--token`.
    pub token: Option<String>,
    /// `--password`.
    pub password: Option<String>,
    /// `--password-file`.
    pub password_file: Option<PathBuf>,
    /// `--verbose`: log every frame (level trace).
    pub verbose: bool,
    /// `--allow-unconfigured`: upstream needs it to start without a config; clawgate accepts it
    /// and always starts.
    pub allow_unconfigured: bool,
    /// `--log-level`.
    pub log_level: Option<Level>,
    /// `--help`.
    pub help: bool,
}

/// A command line that cannot be run (exit 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<lexopt::Error> for UsageError {
    fn from(e: lexopt::Error) -> Self {
        UsageError(e.to_string())
    }
}

impl RunArgs {
    /// The flags that take part in configuration resolution (the password file is read by
    /// [`crate::settings`]).
    pub fn flags(&self) -> RunFlags {
        RunFlags {
            port: self.port.clone(),
            bind: self.bind.clone(),
            auth: self.auth.clone(),
            token: self.token.clone(),
            password: self.password.clone(),
            password_file_text: None,
        }
    }
}

/// Parse the arguments that follow `gateway run` (no program name).
pub fn parse_run_args(args: Vec<OsString>) -> Result<RunArgs, UsageError> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut out = RunArgs::default();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("port") => out.port = Some(parser.value()?.string()?),
            Long("bind") => out.bind = Some(parser.value()?.string()?),
            Long("auth") => out.auth = Some(parser.value()?.string()?),
            Long("token") => out.token = Some(parser.value()?.string()?),
            Long("password") => out.password = Some(parser.value()?.string()?),
            Long("password-file") => out.password_file = Some(PathBuf::from(parser.value()?)),
            Long("log-level") => {
                let v = parser.value()?.string()?;
                out.log_level = Some(Level::parse(&v).ok_or_else(|| {
                    UsageError(format!(
                        "invalid --log-level {v:?}: use error, warn, info, debug or trace"
                    ))
                })?);
            }
            Long("verbose") => out.verbose = true,
            Long("allow-unconfigured") => out.allow_unconfigured = true,
            Short('h') | Long("help") => out.help = true,
            _ => return Err(arg.unexpected().into()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<RunArgs, UsageError> {
        parse_run_args(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn flags_and_equals_forms() {
        let a = parse(&[
            "--port=1234",
            "--bind",
            "lan",
            "--token",
            "t0k",
            "--verbose",
            "--log-level",
            "debug",
            "--allow-unconfigured",
        ])
        .unwrap();
        assert_eq!(a.port.as_deref(), Some("1234"));
        assert_eq!(a.bind.as_deref(), Some("lan"));
        assert_eq!(a.token.as_deref(), Some("t0k"));
        assert!(a.verbose && a.allow_unconfigured);
        assert_eq!(a.log_level, Some(Level::Debug));
        assert_eq!(a.flags().port.as_deref(), Some("1234"));
    }

    #[test]
    fn usage_errors() {
        assert!(parse(&["--nope"]).is_err());
        assert!(parse(&["--port"]).is_err());
        assert!(parse(&["stray"]).is_err());
        assert!(parse(&["--log-level", "loud"]).is_err());
    }
}
