//! Black-box tests of the clawgate binaries: a harness that starts either shell on a free
//! loopback port, and upstream's frame schema to validate what the gateway sends.

pub mod deps;
pub mod harness;
pub mod schema;
pub mod tempdir;
