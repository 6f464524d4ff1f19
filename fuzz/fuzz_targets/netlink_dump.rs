//! One datagram of the kernel's rtnetlink answer to a link or address dump: the entries and
//! the addresses chosen for mDNS.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _chosen = clawgate_core::fuzzing::mdns::netlink(data);
});
