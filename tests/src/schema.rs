//! Upstream's machine-readable frame schema and validation against it.
