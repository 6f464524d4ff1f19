//! Link options that keep the release binary small: see `host/link`.

fn main() {
    clawgate_link::configure();
}
