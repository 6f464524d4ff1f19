//! `clawgate gateway run`: start the gateway and serve until SIGTERM or SIGINT.

use std::ffi::OsString;

use clawgate_host::startup;

use crate::event_loop;

/// Run the gateway in the foreground; `args` are those after `gateway run`. Returns the exit
/// status: 0 after a clean shutdown, 1 when it could not start or serve, 2 on a usage error,
/// 78 when the configuration is refused.
pub fn main(args: Vec<OsString>) -> i32 {
    match startup::start(args) {
        Ok(started) => match event_loop::run(started) {
            Ok(()) => 0,
            Err(_) => startup::EXIT_FAILURE,
        },
        Err(e) => {
            e.report();
            e.exit_code()
        }
    }
}
