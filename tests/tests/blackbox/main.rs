//! The black-box suite: every case runs against both binaries (`…::mio_shell::<case>` and `…::smol_shell::<case>`), so a
//! difference between the shells is a failing test. Build the binaries first
//! (`scripts/test.sh` does).

mod admission;
mod agent;
mod backends;
mod channel_story;
mod control_ui;
mod discord;
mod durability;
mod handshake;
mod hostile;
mod http;
mod idle;
mod lifecycle;
mod limits;
mod mcp;
mod memory;
mod pairing;
mod remote;
mod runs;
mod sessions;
mod slack;
mod slack_users;
mod telegram;
mod tools;
mod tools_http;
mod turn_wakeups;
