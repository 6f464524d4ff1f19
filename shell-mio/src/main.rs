//! The `clawgate` command.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("clawgate: usage: clawgate [gateway run|gateway <command>|devices|nodes|doctor|logs]");
    std::process::exit(2);
}
