//! Stripped binary sizes of both shells: as built for this machine and, where the aarch64
//! cross toolchain is installed, as built for a 64-bit Raspberry Pi (the build
//! `scripts/pi-build.sh` makes).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The Pi's Rust target.
pub const PI_TARGET: &str = "aarch64-unknown-linux-gnu";
/// The cross C compiler and linker the Pi build needs.
const PI_GCC: &str = "aarch64-linux-gnu-gcc";
/// The two shells' binaries.
pub const SHELLS: [&str; 2] = ["clawgate", "clawgate-smol"];

/// How the Pi binaries came to be, or why there are none.
#[derive(Clone, Debug)]
pub enum PiBuild {
    /// Built by this run, in this many seconds.
    Built(f64),
    /// Not rebuilt by this run (`--no-build`); whatever is in the target directory is shown.
    NotRebuilt,
    /// No Pi figures, for this reason.
    Missing(String),
}

/// Both shells' sizes in bytes, `None` where the binary is absent.
#[derive(Clone, Debug)]
pub struct Sizes {
    /// Built for this machine.
    pub host: [Option<u64>; 2],
    /// Built for the Pi.
    pub pi: [Option<u64>; 2],
    /// How the Pi column came to be.
    pub pi_build: PiBuild,
}

/// Whether the cross toolchain is here: the Rust target's standard library and the cross gcc.
fn pi_toolchain() -> Result<(), String> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .ok_or("`rustc --print sysroot` failed")?;
    if !sysroot.join("lib/rustlib").join(PI_TARGET).is_dir() {
        return Err(format!("the Rust target {PI_TARGET} is not installed"));
    }
    let gcc = Command::new(PI_GCC).arg("--version").output();
    if !gcc.is_ok_and(|o| o.status.success()) {
        return Err(format!("{PI_GCC} is not installed"));
    }
    Ok(())
}

/// Build both shells for the Pi from the workspace at `root` (`cargo build --release --target
/// aarch64-unknown-linux-gnu`, linked by the cross gcc), if the toolchain is present.
pub fn build_pi(root: &Path) -> PiBuild {
    if let Err(why) = pi_toolchain() {
        return PiBuild::Missing(format!("{why} (scripts/pi-build.sh installs it)"));
    }
    eprintln!("building clawgate, clawgate-smol for {PI_TARGET} (release)");
    let t0 = Instant::now();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let ok = Command::new(cargo)
        .args(["build", "--release", "--target", PI_TARGET])
        .args(SHELLS.iter().flat_map(|s| ["-p", *s]))
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", PI_GCC)
        .env("CC_aarch64_unknown_linux_gnu", PI_GCC)
        .current_dir(root)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        PiBuild::Built(t0.elapsed().as_secs_f64())
    } else {
        PiBuild::Missing(format!(
            "`cargo build --release --target {PI_TARGET}` failed"
        ))
    }
}

/// The sizes of the shells in `bin_dir` (this machine's release directory) and in the Pi
/// target's release directory beside it.
pub fn measure(bin_dir: &Path, pi_build: PiBuild) -> Sizes {
    let size = |dir: &Path, f: &str| std::fs::metadata(dir.join(f)).ok().map(|m| m.len());
    let pi_dir = bin_dir
        .parent()
        .map(|t| t.join(PI_TARGET).join("release"))
        .unwrap_or_default();
    let pi = match pi_build {
        PiBuild::Missing(_) => [None, None],
        _ => SHELLS.map(|f| size(&pi_dir, f)),
    };
    Sizes {
        host: SHELLS.map(|f| size(bin_dir, f)),
        pi,
        pi_build,
    }
}
