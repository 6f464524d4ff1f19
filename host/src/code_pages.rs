//! Code pages that start-up faulted in, unmapped once the gateway has started
//! ([`release_start_up_code`]).
//!
//! The kernel maps a file's pages into a process by fault-around: one touched instruction maps
//! its whole 64 KiB window (or a whole large folio of the page cache), so start-up (settings,
//! migrations, SQLite's statement compiler, TLS roots) leaves code and read-only data resident
//! that an idle gateway never runs again: measured, a third of the binary's resident code and
//! the unwinder library's pages. `madvise(MADV_RANDOM)` does not help here: on Linux 6.18 it
//! only turns read-ahead off and leaves fault-around as it was.
//!
//! Once start-up is over, the read-only segments of every loaded object (the binary, libc,
//! ld.so, libgcc_s: code and read-only data, never written) are unmapped from this process with
//! `MADV_DONTNEED`. Their pages stay in the page cache (they are the files' own, shared with
//! every other process): what the running gateway touches again is mapped back by a minor
//! fault, without IO. Writable segments (`.data`, `.bss`, and the relocated `.data.rel.ro`,
//! whose pages hold this process's own copies) are never touched.
//!
//! An object whose relocations write into its read-only segments (`DT_TEXTREL`: none on a
//! usual x86-64 or aarch64 system, where shared code is position-independent) is left alone,
//! as its pages hold relocated copies. A debugger's breakpoint written into the code before
//! this call is lost with its page.
//! Elsewhere than glibc on Linux it does nothing.
#![allow(unsafe_code)]

use std::ops::Range;

/// Unmap the read-only segments of every loaded object ([`read_only_segments`]); the bytes
/// advised (0 where unsupported, or if every `madvise` failed).
#[inline(never)] // a mark for scripts/hot-functions.sh (callgrind dumps when it returns)
pub fn release_start_up_code() -> usize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        read_only_segments()
            .into_iter()
            .filter(|r| {
                // SAFETY: `r` is a whole-page part of a read-only segment of a loaded object,
                // never written (see `read_only_segments`): dropping its page-table entries
                // loses nothing, and a later access maps the file's page again.
                unsafe {
                    libc::madvise(r.start as *mut libc::c_void, r.len(), libc::MADV_DONTNEED) == 0
                }
            })
            .map(|r| r.len())
            .sum()
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        0
    }
}

/// The whole pages of the loaded objects' read-only `PT_LOAD` segments (code and read-only
/// data), from the dynamic loader's own list: segments that are writable or overlap a
/// `PT_GNU_RELRO` range (written at load, then made read-only) are left out, as is the vDSO.
/// Empty where unsupported.
pub fn read_only_segments() -> Vec<Range<usize>> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut out = Vec::new();
        // SAFETY: dl_iterate_phdr calls `collect` once per loaded object with a valid
        // `dl_phdr_info`, and `out` outlives the call.
        unsafe { libc::dl_iterate_phdr(Some(collect), std::ptr::from_mut(&mut out).cast()) };
        out
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        Vec::new()
    }
}

/// The `dl_iterate_phdr` callback of [`read_only_segments`]: adds one object's segments to the
/// `Vec<Range<usize>>` at `data`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" fn collect(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: the loader hands a valid `info` whose `dlpi_phdr` points at `dlpi_phnum` program
    // headers, and `data` is the vector `read_only_segments` passed.
    let (info, out) = unsafe { (&*info, &mut *data.cast::<Vec<Range<usize>>>()) };
    let headers = if info.dlpi_phdr.is_null() {
        &[][..]
    } else {
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
    };
    let base = info.dlpi_addr as usize;
    if let Some(d) = headers.iter().find(|h| h.p_type == libc::PT_DYNAMIC) {
        let count = d.p_memsz as usize / std::mem::size_of::<Dyn>();
        // SAFETY: an object's `PT_DYNAMIC` segment is mapped by the loader at `base + p_vaddr`
        // and holds `p_memsz` bytes of aligned `Dyn` entries.
        let entries = unsafe {
            std::slice::from_raw_parts(base.wrapping_add(d.p_vaddr as usize) as *const Dyn, count)
        };
        if has_text_relocations(entries) {
            return 0;
        }
    }
    // SAFETY: getauxval only reads the process's auxiliary vector.
    let vdso = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) } as usize;
    let at = |vaddr: usize, size: usize| {
        let start = base.wrapping_add(vaddr);
        start..start.saturating_add(size)
    };
    let relro: Vec<Range<usize>> = headers
        .iter()
        .filter(|h| h.p_type == libc::PT_GNU_RELRO)
        .map(|h| at(h.p_vaddr as usize, h.p_filesz as usize))
        .collect();
    for h in headers {
        if h.p_type != libc::PT_LOAD || h.p_flags & libc::PF_W != 0 {
            continue;
        }
        let span = at(h.p_vaddr as usize, h.p_filesz as usize);
        if span.contains(&vdso)
            || relro
                .iter()
                .any(|r| r.start < span.end && span.start < r.end)
        {
            continue;
        }
        let pages = whole_pages(span, page_size());
        if !pages.is_empty() {
            out.push(pages);
        }
    }
    0
}

/// One entry of an object's dynamic section (`ElfN_Dyn`: a tag and a value or address, both
/// of the pointer's width).
#[repr(C)]
struct Dyn {
    tag: isize,
    val: usize,
}

/// `DT_NULL`: the dynamic section's end.
const DT_NULL: isize = 0;
/// `DT_TEXTREL`: relocations write into read-only segments.
const DT_TEXTREL: isize = 22;
/// `DT_FLAGS`, and its `DF_TEXTREL` bit (the same meaning as `DT_TEXTREL`).
const DT_FLAGS: isize = 30;
const DF_TEXTREL: usize = 0x4;

/// Whether an object's dynamic section says its relocations write into its read-only
/// segments: their pages then hold this process's relocated copies, not the file's, and
/// unmapping them would bring back the unrelocated bytes, so such an object is left alone.
fn has_text_relocations(entries: &[Dyn]) -> bool {
    entries
        .iter()
        .take_while(|e| e.tag != DT_NULL)
        .any(|e| e.tag == DT_TEXTREL || (e.tag == DT_FLAGS && e.val & DF_TEXTREL != 0))
}

/// The pages lying wholly inside `span` (its first and last partial pages left out, as they may
/// belong to a neighbouring segment).
fn whole_pages(span: Range<usize>, page: usize) -> Range<usize> {
    let start = span.start.next_multiple_of(page);
    let end = span.end & !(page - 1);
    start..end.max(start)
}

/// The system's page size.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn page_size() -> usize {
    // SAFETY: sysconf only reads a constant of the system.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dyns(pairs: &[(isize, usize)]) -> Vec<Dyn> {
        pairs.iter().map(|&(tag, val)| Dyn { tag, val }).collect()
    }

    #[test]
    fn an_object_with_text_relocations_is_seen() {
        assert!(has_text_relocations(&dyns(&[
            (1, 5),
            (DT_TEXTREL, 0),
            (DT_NULL, 0)
        ])));
        assert!(has_text_relocations(&dyns(&[
            (DT_FLAGS, DF_TEXTREL | 0x8),
            (DT_NULL, 0)
        ])));
        assert!(!has_text_relocations(&dyns(&[
            (DT_FLAGS, 0x8),
            (1, 5),
            (DT_NULL, 0)
        ])));
        // Past `DT_NULL` is padding, not entries.
        assert!(!has_text_relocations(&dyns(&[
            (DT_NULL, 0),
            (DT_TEXTREL, 0)
        ])));
    }

    #[test]
    fn whole_pages_leave_partial_pages_out() {
        assert_eq!(whole_pages(0x1000..0x3000, 0x1000), 0x1000..0x3000);
        assert_eq!(whole_pages(0x1010..0x3010, 0x1000), 0x2000..0x3000);
        assert!(whole_pages(0x1010..0x1ff0, 0x1000).is_empty());
    }
}
