//! Network namespaces for what loopback cannot show: a gateway namespace joined to each
//! peer namespace by a veth pair created inside them (`ip -n`), so the host's own interfaces
//! are never touched. Peer `i` is `10.213.i.2/30`, the gateway's end of its link
//! `10.213.i.1/30`; every namespace has its loopback up. [`Netns::run`] runs code on a thread
//! that joined a namespace (sockets it opens live there, whichever thread uses them later);
//! the gateway itself runs in one through `ip netns exec` ([`crate::harness::Options::netns`]).
//! Everything is removed on drop, also when a test panics; namespaces left by a killed test
//! process are removed by the next run.
//!
//! [`Net::create`] returns `None` (the test then skips, saying why) where namespaces cannot
//! be created, and panics under `CI=true`, where the tests are required.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

use crate::harness::WAIT;

/// Prefix of every namespace these tests create (then `<pid>-<n>-<role>`).
const PREFIX: &str = "cgt-";

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// `ip netns add` sets up `/run/netns` the first time: one creation at a time.
static CREATING: Mutex<()> = Mutex::new(());

/// One network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    fn add(name: String) -> io::Result<Self> {
        ip(&["netns", "add", &name])?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Its name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <name> args…`.
    fn ip(&self, args: &[&str]) -> io::Result<()> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Run `f` on a thread that joined this namespace; a panic in `f` is the caller's.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        within(&self.name, f)
    }

    /// A TCP connection from this namespace to `addr`.
    pub fn tcp(&self, addr: SocketAddr) -> TcpStream {
        self.run(|| TcpStream::connect_timeout(&addr, WAIT))
            .unwrap_or_else(|e| panic!("connect from {} to {addr}: {e}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Run `f` on a thread that joined the namespace `name`; a panic in `f` is the caller's.
pub fn within<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    thread::scope(|s| {
        let joined = s.spawn(move || {
            enter(name).unwrap_or_else(|e| panic!("join network namespace {name}: {e}"));
            f()
        });
        joined
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Join the namespace `name` (this thread only).
fn enter(name: &str) -> io::Result<()> {
    let fd = std::fs::File::open(format!("/run/netns/{name}"))?;
    move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&fd),
        Some(LinkNameSpaceType::Network),
    )?;
    Ok(())
}

/// Run `ip` with `args`; its stderr becomes the error.
fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A peer namespace and its address.
#[derive(Debug)]
pub struct Peer {
    /// Its namespace.
    pub ns: Netns,
    /// Its address on the link to the gateway.
    pub addr: Ipv4Addr,
}

/// A gateway namespace and the peer namespaces linked to it.
#[derive(Debug)]
pub struct Net {
    /// Peers, dropped (deleted) before the gateway's namespace.
    pub peers: Vec<Peer>,
    /// Where the gateway runs.
    pub gateway: Netns,
}

impl Net {
    /// A gateway namespace with `peers` peer namespaces, each on its own link; `None` (after
    /// saying why on stderr) where namespaces cannot be created, a panic under `CI=true`.
    pub fn create(peers: usize) -> Option<Self> {
        match Self::try_create(peers) {
            Ok(net) => Some(net),
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("network namespaces are required under CI=true, and: {e}")
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot create network namespaces here ({e}); run as root");
                None
            }
        }
    }

    fn try_create(peers: usize) -> io::Result<Self> {
        let _one = CREATING.lock().unwrap_or_else(|p| p.into_inner());
        remove_stale();
        let base = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let gateway = Netns::add(format!("{base}-gw"))?;
        let mut net = Net {
            peers: Vec::new(),
            gateway,
        };
        for i in 0..peers {
            let ns = Netns::add(format!("{base}-p{i}"))?;
            let octet = u8::try_from(i).map_err(io::Error::other)?;
            let (near, far) = (format!("peer{i}"), "eth0");
            net.gateway.ip(&[
                "link", "add", &near, "type", "veth", "peer", "name", far, "netns", &ns.name,
            ])?;
            net.gateway
                .ip(&["addr", "add", &format!("10.213.{octet}.1/30"), "dev", &near])?;
            net.gateway.ip(&["link", "set", &near, "up"])?;
            ns.ip(&["addr", "add", &format!("10.213.{octet}.2/30"), "dev", far])?;
            ns.ip(&["link", "set", far, "up"])?;
            net.peers.push(Peer {
                ns,
                addr: Ipv4Addr::new(10, 213, octet, 2),
            });
        }
        Ok(net)
    }

    /// The gateway's address as peer `i` reaches it.
    pub fn gateway_addr(&self, i: usize) -> Ipv4Addr {
        let [_, _, octet, _] = self.peers[i].addr.octets();
        Ipv4Addr::new(10, 213, octet, 1)
    }
}

/// Delete namespaces of this prefix whose test process is gone (killed before its drops ran).
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next());
        if let Some(pid) = pid
            && std::fs::metadata(format!("/proc/{pid}")).is_err()
        {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}
