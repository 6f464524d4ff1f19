//! Opening the listening socket, and saying clearly why it could not be opened: for a port
//! already in use, which process holds it when `/proc` tells.

use std::io;
use std::net::{SocketAddr, TcpListener};

/// Processes scanned at most when looking for a port's holder.
const MAX_PROCESSES_SCANNED: usize = 4096;

/// Why the listener could not be opened (exit 1).
#[derive(Debug)]
pub enum BindError {
    /// Another socket listens on the port; its holder when known (`pid 123: node gateway`).
    InUse {
        /// The address asked for.
        addr: SocketAddr,
        /// The holding process, if found.
        holder: Option<String>,
    },
    /// Any other failure.
    Other {
        /// The address asked for.
        addr: SocketAddr,
        /// The error.
        error: io::Error,
    },
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindError::InUse {
                addr,
                holder: Some(h),
            } => write!(
                f,
                "port {} is already in use ({h}); cannot listen on {addr}",
                addr.port()
            ),
            BindError::InUse { addr, holder: None } => write!(
                f,
                "port {} is already in use; cannot listen on {addr}",
                addr.port()
            ),
            BindError::Other { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
        }
    }
}

/// Open a nonblocking listener on `addr`.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    let listener = TcpListener::bind(addr).map_err(|error| match error.kind() {
        io::ErrorKind::AddrInUse => BindError::InUse {
            addr,
            holder: port_holder(addr.port()),
        },
        _ => BindError::Other { addr, error },
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|error| BindError::Other { addr, error })?;
    Ok(listener)
}

/// `pid N: command` of a process listening on TCP `port`, found through `/proc`.
pub fn port_holder(port: u16) -> Option<String> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .take(MAX_PROCESSES_SCANNED)
    {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|t| wanted.iter().any(|w| t.as_os_str() == w.as_str()))
        });
        if holds {
            let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmd: Vec<String> = cmd
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            return Some(format!("pid {pid}: {}", cmd.join(" ")));
        }
    }
    None
}

/// Socket inodes in a `/proc/net/tcp*` table that listen on `port`.
fn listening_inodes(table: &str, port: u16) -> Vec<String> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local = cols.get(1)?;
            let state = cols.get(3)?;
            let inode = cols.get(9)?;
            let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (local_port == port && *state == LISTEN && *inode != "0").then(|| inode.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_listening_inode() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:4965 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 424242 1 0 100 0 0 10 0\n\
   1: 0100007F:4965 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 535353 1 0 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 18789), vec!["424242".to_string()]);
        assert!(listening_inodes(table, 80).is_empty());
    }

    #[test]
    fn names_our_own_process_as_holder() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let err = bind(addr).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("port {} is already in use", addr.port())),
            "{text}"
        );
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
    }
}
