//! The open-file limit: raised from the soft to the hard limit at start, so that ten thousand
//! sockets fit without the user tuning `ulimit -n`.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Raise the soft `RLIMIT_NOFILE` to the hard limit; returns the limit now in force
/// (`None` = unlimited).
pub fn raise_nofile() -> std::io::Result<Option<u64>> {
    let lim = getrlimit(Resource::Nofile);
    if lim.current == lim.maximum {
        return Ok(lim.current);
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        },
    )?;
    Ok(lim.maximum)
}
