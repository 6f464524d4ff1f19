//! Link options that keep the release binaries small: each gateway binary's `build.rs` (`clawgate`,
//! `clawgate-smol`) calls [`configure`].
//!
//! Release builds are stripped here rather than by the profile, so that `CLAWGATE_KEEP_SYMBOLS=1`
//! gives the very same code (same symbol names, same layout) with its symbols, to profile.
//!
//! Only for release builds linked by LLD: `x86_64-unknown-linux-gnu`, where rustc links with its
//! bundled LLD anyway, and the other Linux GNU targets (the Pi's `aarch64-unknown-linux-gnu`) when
//! they are cross-built on an x86_64 Linux host, whose toolchain ships that LLD (`rust-lld`, found
//! by the C compiler driver through `-fuse-ld=lld` and the toolchain's `gcc-ld` directory):
//! - `--icf=all` folds identical functions (monomorphised copies that compiled to the same code);
//! - the release profile aborts on panic (`panic = "abort"` in the workspace manifest), so nothing
//!   ever unwinds through the binary and its unwind tables (`.eh_frame`, its lookup header,
//!   `.gcc_except_table`) are left out: a tenth of the size;
//! - the functions listed in `host/link/hot-functions.txt` (`scripts/hot-functions.sh` regenerates
//!   it) are placed together at the front of the code, in the list's order: first what an idle
//!   gateway runs once started (serving a few clients included), then what Telegram polling
//!   adds, then the rest of start-up, then what the agent and channel paths add. The kernel maps
//!   code in 64 KiB windows (or larger folios), and the gateway unmaps start-up's code once
//!   started (`clawgate_host::code_pages`), so an idle gateway maps back the first part of its
//!   binary only. The names are globs with the crates' disambiguators wildcarded and type
//!   arguments kept: LLD resolves them against the objects' real section names at link time, so
//!   a change of a crate's dependencies (which moves every disambiguator) leaves them valid, but
//!   for the instances of generic functions with legacy names, whose one hash covers crate and
//!   type arguments (a later tier places all their instances);
//! - `-z pack-relative-relocs` stores the position-independent executable's relocations in the
//!   compact RELR form, which needs glibc 2.36 at run time, so it is used only when the build host
//!   is the target and its glibc is at least 2.36.

#![deny(unsafe_code)]

use std::env;
use std::path::PathBuf;

/// A linker script fragment that drops the unwind tables and keeps LLD's default layout.
const DISCARD_UNWIND_TABLES: &str = "SECTIONS { /DISCARD/ : { *(.eh_frame) *(.gcc_except_table .gcc_except_table.*) } } INSERT AFTER .text;\n";

/// Emit the link options for the calling package's binaries (call it from `build.rs`).
pub fn configure() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CLAWGATE_KEEP_SYMBOLS");
    let linux = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if env::var("PROFILE").as_deref() != Ok("release") || !linux {
        return;
    }
    if env::var_os("CLAWGATE_KEEP_SYMBOLS").is_none() {
        link("--strip-all");
    }
    let target = env::var("TARGET").unwrap_or_default();
    if target != "x86_64-unknown-linux-gnu" {
        let Some(gcc_ld) = cross_lld(&target) else {
            return;
        };
        println!("cargo::rustc-link-arg-bins=-fuse-ld=lld");
        println!("cargo::rustc-link-arg-bins=-B{}", gcc_ld.display());
    }
    link("--icf=all");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let script = out.join("discard-unwind-tables.ld");
    std::fs::write(&script, DISCARD_UNWIND_TABLES).expect("write the linker script");
    link("--no-eh-frame-hdr");
    link(&format!("-T,{}", script.display()));
    // This crate's own directory, fixed when it was compiled: the list is shared by every binary.
    let hot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("hot-functions.txt");
    println!("cargo::rerun-if-changed={}", hot.display());
    if let Ok(list) = std::fs::read_to_string(&hot) {
        let script = out.join("hot-functions.ld");
        std::fs::write(&script, hot_section(&list)).expect("write the linker script");
        link(&format!("-T,{}", script.display()));
    }
    if env::var("HOST").as_deref() == Ok(target.as_str()) && host_glibc_at_least(2, 36) {
        link("-z,pack-relative-relocs");
    }
}

/// The C runtime's start-up code (`_start` and the `crtbegin` helpers every run calls), first in
/// `.text.hot`: left at the front of `.text`, it alone would map a window of cold code.
const C_RUNTIME_START: &str = "  *crt1.o(.text) *crtbeginS.o(.text) *crtbegin.o(.text)\n";

/// A linker script fragment that puts the functions named in `list` (one glob per line) together
/// in `.text.hot`, ahead of the rest of the code.
fn hot_section(list: &str) -> String {
    let mut script = String::from("SECTIONS { .text.hot : {\n");
    script.push_str(C_RUNTIME_START);
    for name in list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        script.push_str(&format!("  *(.text.{name} .text.unlikely.{name})\n"));
    }
    script.push_str("} } INSERT BEFORE .text;\n");
    script
}

/// Pass `arg` to the linker (through the C compiler driver) for this package's binaries.
fn link(arg: &str) {
    println!("cargo::rustc-link-arg-bins=-Wl,{arg}");
}

/// The directory holding the toolchain's `ld.lld` wrapper, for a Linux GNU `target` cross-built on
/// an x86_64 Linux host; `None` elsewhere or when the toolchain has no LLD.
fn cross_lld(target: &str) -> Option<PathBuf> {
    let host = env::var("HOST").ok()?;
    if host != "x86_64-unknown-linux-gnu" || !target.ends_with("-linux-gnu") {
        return None;
    }
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = std::process::Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let dir = sysroot.join("lib/rustlib").join(&host).join("bin/gcc-ld");
    dir.join("ld.lld").is_file().then_some(dir)
}

/// Whether the glibc this build script runs on is at least `major.minor`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn host_glibc_at_least(major: u32, minor: u32) -> bool {
    unsafe extern "C" {
        fn gnu_get_libc_version() -> *const std::ffi::c_char;
    }
    // SAFETY: glibc returns a pointer to a static NUL-terminated string such as "2.36".
    let version = unsafe { std::ffi::CStr::from_ptr(gnu_get_libc_version()) };
    let mut parts = version.to_str().unwrap_or("").split('.');
    let mut next = || {
        parts
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0)
    };
    (next(), next()) >= (major, minor)
}

/// Not a glibc host: never assume its glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn host_glibc_at_least(_major: u32, _minor: u32) -> bool {
    false
}
