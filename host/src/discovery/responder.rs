//! The seam between the advertiser's retry loop and whatever answers mDNS queries: the
//! [`Responder`] trait, and [`MdnsResponder`], its implementation: the core's
//! [`clawgate_core::mdns::responder::Responder`] decides, a thread of its own sends and
//! receives on an [`MdnsSocket`].

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use clawgate_core::discovery::Advert;
use clawgate_core::mdns::responder::{self as decide, Reply, ResponderError};
use clawgate_core::mdns::wire::MAX_PACKET;

use super::socket::{MdnsSocket, interface_addresses};
use crate::wait::Wake;

/// How long [`Responder::unregister`] waits for the thread to send its goodbye and end.
const GOODBYE_WAIT: Duration = Duration::from_millis(800);

/// Why advertising failed. Each one is retried by the advertiser with backoff.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The responder could not be started (no interface, no socket, no thread).
    #[error("mDNS responder could not start: {0}")]
    Start(#[source] io::Error),
    /// The service description was refused (a name or TXT entry out of bounds), or no free
    /// instance name was left after conflicts.
    #[error("mDNS service refused: {0}")]
    Service(#[source] ResponderError),
    /// The responder failed while running (a send or receive failed: an interface gone).
    #[error("mDNS responder failed: {0}")]
    Runtime(#[source] io::Error),
    /// The responder stopped or stopped answering.
    #[error("mDNS responder stopped")]
    Stopped,
    /// The advertiser's worker panicked; it logs this and gives up.
    #[error("mDNS advertiser failed internally: {0}")]
    Panicked(String),
}

/// What a healthy responder has to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Advertising as registered.
    Ok,
    /// Advertising, under a new instance name after a conflict with another host.
    Renamed(String),
}

/// Something that can put an [`Advert`] on the network and take it off again.
///
/// The advertiser calls these from its own thread only; none of them may block for long.
pub trait Responder {
    /// Start advertising `advert`. Replaces any earlier registration.
    fn register(&mut self, advert: &Advert) -> Result<(), DiscoveryError>;
    /// Whether the registration is still being answered.
    fn health(&mut self) -> Result<Health, DiscoveryError>;
    /// Stop advertising (send goodbyes where possible). Never fails: best effort, bounded.
    fn unregister(&mut self);
}

/// The [`Responder`] of clawgate: one thread and socket per registration, so a thread that
/// failed is replaced whole on the next [`Responder::register`].
#[derive(Debug, Default)]
pub struct MdnsResponder {
    running: Option<Running>,
}

/// A registration's thread.
#[derive(Debug)]
struct Running {
    /// Written to ask the thread to say goodbye and end.
    stop: Arc<Wake>,
    events: Receiver<Event>,
    thread: JoinHandle<()>,
}

/// What the thread reports.
#[derive(Debug)]
enum Event {
    Renamed(String),
    Failed(DiscoveryError),
}

impl MdnsResponder {
    /// A responder with nothing registered yet.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Responder for MdnsResponder {
    fn register(&mut self, advert: &Advert) -> Result<(), DiscoveryError> {
        self.unregister();
        let interfaces = interface_addresses().map_err(DiscoveryError::Start)?;
        let (joined, advertised) = match advert.address {
            Some(only) => {
                let on: Vec<(u32, IpAddr)> =
                    interfaces.into_iter().filter(|(_, a)| *a == only).collect();
                let on = if on.is_empty() { vec![(0, only)] } else { on };
                (on, vec![only])
            }
            None => {
                let all = interfaces.iter().map(|(_, a)| *a).collect();
                (interfaces, all)
            }
        };
        let decide = decide::Responder::new(advert.clone(), &advertised, Instant::now())
            .map_err(DiscoveryError::Service)?;
        let socket = MdnsSocket::open(&joined).map_err(DiscoveryError::Start)?;
        let stop = Arc::new(Wake::new().map_err(DiscoveryError::Start)?);
        let (report, events) = mpsc::channel();
        let stopped = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("clawgate-mdns-io".into())
            .spawn(move || serve(decide, &socket, &stopped, &report))
            .map_err(DiscoveryError::Start)?;
        self.running = Some(Running {
            stop,
            events,
            thread,
        });
        Ok(())
    }

    fn health(&mut self) -> Result<Health, DiscoveryError> {
        let running = self.running.as_ref().ok_or(DiscoveryError::Stopped)?;
        let mut health = Health::Ok;
        loop {
            match running.events.try_recv() {
                Ok(Event::Renamed(name)) => health = Health::Renamed(name),
                Ok(Event::Failed(e)) => return Err(e),
                Err(TryRecvError::Empty) if !running.thread.is_finished() => return Ok(health),
                Err(_) => return Err(DiscoveryError::Stopped),
            }
        }
    }

    fn unregister(&mut self) {
        let Some(Running {
            stop,
            events,
            thread,
        }) = self.running.take()
        else {
            return;
        };
        stop.wake();
        // The thread drops its reporting end when it ends.
        let deadline = Instant::now() + GOODBYE_WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match events.recv_timeout(left) {
                Ok(_) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = thread.join();
                    return;
                }
                Err(RecvTimeoutError::Timeout) => return,
            }
        }
    }
}

impl Drop for MdnsResponder {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// The thread: probe, announce and answer until `stop` is written, then say goodbye. It sleeps
/// in poll(2) until a packet comes, the next probe or announcement is due, or `stop`.
fn serve(mut decide: decide::Responder, socket: &MdnsSocket, stop: &Wake, report: &Sender<Event>) {
    let mut buf = [0; MAX_PACKET];
    let failed = |e: DiscoveryError| {
        let _ = report.send(Event::Failed(e));
    };
    loop {
        let now = Instant::now();
        while let Some(packet) = decide.poll(now) {
            if let Err(e) = socket.multicast(&packet) {
                return failed(DiscoveryError::Runtime(e));
            }
        }
        if let Some(name) = decide.take_renamed() {
            let _ = report.send(Event::Renamed(name));
        }
        if let Some(e) = decide.failed() {
            return failed(DiscoveryError::Service(e));
        }
        let timeout = decide
            .next_deadline()
            .map(|due| due.saturating_duration_since(now));
        match socket.wait(Some(stop), timeout) {
            Ok(ready) if ready.woken => break,
            Ok(ready) if ready.socket => {}
            Ok(_) => continue,
            Err(e) => return failed(DiscoveryError::Runtime(e)),
        }
        let (n, from) = match socket.try_recv(&mut buf) {
            Ok(Some(got)) => got,
            Ok(None) => continue,
            Err(e) => return failed(DiscoveryError::Runtime(e)),
        };
        let legacy = from.port() != clawgate_core::mdns::PORT;
        let sent = match decide.handle_packet(Instant::now(), &buf[..n], legacy) {
            Some(Reply::Multicast(p)) => socket.multicast(&p),
            Some(Reply::Unicast(p)) => socket.unicast(&p, from),
            None => Ok(()),
        };
        if let Err(e) = sent {
            return failed(DiscoveryError::Runtime(e));
        }
    }
    if let Some(goodbye) = decide.goodbye() {
        let _ = socket.multicast(&goodbye);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_without_registration_is_stopped() {
        assert!(matches!(
            MdnsResponder::new().health(),
            Err(DiscoveryError::Stopped)
        ));
    }

    #[test]
    fn an_oversized_txt_entry_is_an_error_not_a_panic() {
        let mut a = clawgate_core::discovery::advert(&{
            let mut c = clawgate_core::Config::local_default().with_token("t");
            c.bind_host = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
            c.host_name = "pi5".into();
            c
        })
        .expect("advertises");
        a.txt.push(("displayName".into(), "x".repeat(300)));
        let refused = MdnsResponder::new().register(&a);
        assert!(
            matches!(
                refused,
                Err(DiscoveryError::Service(ResponderError::OutOfBounds) | DiscoveryError::Start(_))
            ),
            "{refused:?}"
        );
    }
}
