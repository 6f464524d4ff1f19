//! Reading what the core's configuration is resolved from: the config file, the environment
//! and the flags of `gateway run`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clawgate_core::config::{ConfigInput, RunFlags};
use clawgate_core::{Config, ConfigError};

use crate::paths;

/// Where settings came from, for messages.
#[derive(Clone, Debug)]
pub struct Sources {
    /// The config file path (whether it exists or not).
    pub config_path: PathBuf,
    /// The state directory.
    pub state_dir: PathBuf,
}

/// Why settings could not be read or resolved. Every variant maps to exit 78.
#[derive(Debug)]
pub enum SettingsError {
    /// The config file exists but cannot be read.
    Read(PathBuf, std::io::Error),
    /// The password file cannot be read.
    PasswordFile(PathBuf, std::io::Error),
    /// The core refused the configuration.
    Config(ConfigError),
}

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettingsError::Read(p, e) => write!(f, "cannot read config file {}: {e}", p.display()),
            SettingsError::PasswordFile(p, e) => {
                write!(f, "cannot read --password-file {}: {e}", p.display())
            }
            SettingsError::Config(e) => write!(f, "{e}"),
        }
    }
}

/// Read the config file's text, if it exists.
pub fn read_config_text(path: &Path) -> Result<Option<String>, SettingsError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SettingsError::Read(path.to_path_buf(), e)),
    }
}

/// The machine's host name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Build the core's input from the environment, the files and the flags.
pub fn input(
    env: BTreeMap<String, String>,
    flags: RunFlags,
    password_file: Option<&Path>,
) -> Result<(ConfigInput, Sources), SettingsError> {
    let state_dir = paths::state_dir(&env);
    let config_path = paths::config_path(&env);
    let file_text = read_config_text(&config_path)?;
    let mut flags = flags;
    if let Some(pf) = password_file {
        flags.password_file_text = Some(
            std::fs::read_to_string(pf)
                .map_err(|e| SettingsError::PasswordFile(pf.to_path_buf(), e))?,
        );
    }
    let secret_files = secret_files(file_text.as_deref());
    let input = ConfigInput {
        secret_files,
        file_text,
        config_path: config_path.display().to_string(),
        state_dir: state_dir.display().to_string(),
        env,
        flags,
        tailnet_ip: crate::tailnet::tailnet_ipv4(),
        host_name: host_name(),
        cpu_parallelism: std::thread::available_parallelism().map_or(0, |n| n.get()),
    };
    Ok((
        input,
        Sources {
            config_path,
            state_dir,
        },
    ))
}

/// The files the config names for secrets (`tokenFile`), read now: path → text or the error.
/// A file that does not parse names none (the core reports the parse error).
fn secret_files(file_text: Option<&str>) -> BTreeMap<String, Result<String, String>> {
    let Some(file) = file_text.and_then(|t| clawgate_core::config::parse_file(t).ok()) else {
        return BTreeMap::new();
    };
    clawgate_core::sorting::map_of(
        clawgate_core::channels::config::token_files(&file)
            .into_iter()
            .map(|path| {
                let text = std::fs::read_to_string(&path).map_err(|e| e.to_string());
                (path, text)
            }),
    )
}

/// Resolve a configuration from the environment, files and flags.
pub fn resolve(
    env: BTreeMap<String, String>,
    flags: RunFlags,
    password_file: Option<&Path>,
) -> Result<(Config, Sources), SettingsError> {
    let (input, sources) = input(env, flags, password_file)?;
    let mut config = Config::resolve(&input).map_err(SettingsError::Config)?;
    crate::ui_root::resolve(&mut config.control_ui.root, &input.env);
    config.skills = crate::skills::load(&config.file, &config.state_dir, &input.env);
    Ok((config, sources))
}
