//! clawgate's durable state: one SQLite database, `$OPENCLAW_STATE_DIR/state/clawgate.sqlite`
//! (WAL, its file kept from one run to the next, `synchronous=FULL`, file 0600 in a 0700
//! directory), written by one thread, which also checkpoints it between transactions
//! ([`Checkpoints`]). A new one is built aside, its schema
//! and the gateway's identity in one transaction, and moved into place whole
//! ([`Db::open_seeded`]).
//!
//! The core never touches it: it emits batches of [`StoreChange`]s, the host hands each batch
//! to the [`Writer`] thread, which commits it in one transaction and reports back with the
//! batch's id once it is on disk. Start-up reads the rows on the calling thread, before any
//! event loop runs ([`Db::load_pairing`], [`Db::load_sessions`]); history reads go through the
//! writer thread, in order with the batches ([`Writer::read`]).
//!
//! ```no_run
//! # fn main() -> Result<(), clawgate_store::DbError> {
//! let state_dir = std::path::Path::new("/tmp/state");
//! let mut db = clawgate_store::Db::open(state_dir)?;
//! let pairing = db.load_pairing()?;
//! let writer = clawgate_store::Writer::spawn(db, |done| println!("{done:?}"))
//!     .expect("a thread");
//! writer.submit(clawgate_core::WorkId(1), Vec::new());
//! writer.close(); // waits for every batch submitted
//! # let _ = pairing; Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod db;
mod fresh;
mod identity;
mod keyed;
mod legacy;
mod schema;
mod upstream;
mod upstream_rows;
mod writer;

pub use clawgate_core::persist::StoreChange;
pub use db::{Db, DbError, Synchronous, db_path};
pub use identity::StoredIdentity;
pub use legacy::{Migrated, legacy_pairing_path};
pub use upstream::{UPSTREAM_SCHEMA, Upstream, UpstreamError, read_upstream, upstream_db_path};
pub use writer::{Checkpoints, IDLE_RELEASE, LINGER, StoreDone, WriteDone, Writer};
