//! The `clawgate` command.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("clawgate: no command implemented yet");
    std::process::exit(2);
}
