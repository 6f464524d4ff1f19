//! How long a shell waits for sockets to flush, shared so that every shell closes and stops
//! the same way.

use std::time::Duration;

/// How long a closed connection may take to flush and see the peer's EOF (upstream's
/// `WEBSOCKET_CLOSE_GRACE_MS`).
pub const CLOSE_GRACE: Duration = Duration::from_millis(1000);
/// How long shutdown waits for every socket to flush before the process exits.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(750);
/// Pause of accepting after the process ran out of file descriptors or memory.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
