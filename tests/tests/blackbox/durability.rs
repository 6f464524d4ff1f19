//! Nothing acknowledged is lost to a crash: devices are paired, approved, their tokens rotated
//! and revoked in a loop while the gateway is killed with SIGKILL, at a random moment or right
//! after a random "ok"; after each restart every approval and token change the gateway
//! answered "ok" to is in force.
//! An operation whose answer never came may have happened or not; nothing is asserted of it.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clawgate_core::client::ClientConfig;
use clawgate_core::device::DeviceKey;
use clawgate_tests::both;
use clawgate_tests::harness::{Gateway, Options, Shell, Ws};
use serde_json::{Value, json};

/// Crash-and-restart rounds per shell (a debug build pairs, approves and rotates one device in
/// about 100 ms, so a kill within 420 ms lands anywhere in that cycle).
const ROUNDS: usize = 8;

fn options() -> Options {
    Options::new()
        .token("t0ken")
        .config(r#"{gateway: {nodes: {pairing: {autoApproveLocal: false}}}}"#)
}

/// What the gateway acknowledged about one device.
#[derive(Debug, Default)]
struct Acked {
    approved: bool,
    /// The operator token it last handed out, until a revoke was acknowledged.
    token: Option<String>,
    /// Tokens acknowledged as rotated away or revoked.
    retired: Vec<String>,
    /// A rotate or revoke was sent and its answer never came: it may have happened, so the
    /// token above may rightly be refused.
    token_in_doubt: bool,
}

fn device(gw: &Gateway, seed: u8) -> ClientConfig {
    let mut cfg = gw.cli();
    cfg.token = Some("t0ken".into());
    cfg.device = Some(DeviceKey::from_seed([seed; 32]));
    cfg
}

fn by_token(gw: &Gateway, seed: u8, token: &str) -> ClientConfig {
    let mut cfg = device(gw, seed);
    cfg.token = None;
    cfg.device_token = Some(token.to_string());
    cfg
}

fn admin(gw: &Gateway) -> Option<Ws> {
    let mut cfg = gw.cli();
    cfg.token = Some("t0ken".into());
    cfg.scopes = vec!["operator.admin".into(), "operator.pairing".into()];
    let mut ws = Ws::try_connect(gw.port(), cfg).ok()?;
    ws.try_hello()?.ok()?;
    Some(ws)
}

/// A small xorshift generator seeded from the clock; the seed is printed for a replay.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        eprintln!("durability seed {seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Kills the gateway with SIGKILL the moment it has answered a given number of "ok"s: if an
/// answer ran ahead of its fsync, the change is very likely still unwritten then.
struct AckKiller {
    pid: u32,
    left: Option<u64>,
}

impl AckKiller {
    /// One more "ok" came back.
    fn acked(&mut self) {
        if let Some(left) = self.left.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                let pid = i32::try_from(self.pid)
                    .ok()
                    .and_then(rustix::process::Pid::from_raw);
                if let Some(pid) = pid {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
                self.left = None;
            }
        }
    }
}

/// Pair, approve, connect, rotate and (every other device) revoke, recording every "ok",
/// until the gateway dies under it. Returns the next device seed.
fn churn(
    gw: &Gateway,
    acked: &mut BTreeMap<u8, Acked>,
    mut seed: u8,
    killer: &mut AckKiller,
) -> u8 {
    let Some(mut admin) = admin(gw) else {
        return seed;
    };
    loop {
        seed = seed.wrapping_add(1).max(1);
        let id = DeviceKey::from_seed([seed; 32]).id();
        let Ok(mut first) = Ws::try_connect(gw.port(), device(gw, seed)) else {
            return seed;
        };
        let Some(Err(refused)) = first.try_hello() else {
            return seed;
        };
        let Some(request_id) = refused
            .details
            .as_ref()
            .and_then(|d| d["requestId"].as_str())
            .map(str::to_string)
        else {
            return seed;
        };
        match admin.try_call(
            "device.pair.approve",
            Some(json!({"requestId": request_id})),
        ) {
            Some(Ok(_)) => {
                acked.entry(seed).or_default().approved = true;
                killer.acked();
            }
            _ => return seed,
        }
        let Ok(mut paired) = Ws::try_connect(gw.port(), device(gw, seed)) else {
            return seed;
        };
        match paired.try_hello() {
            Some(Ok(hello)) => {
                let token = hello["auth"]["deviceToken"].as_str().map(str::to_string);
                acked.entry(seed).or_default().token = token;
                killer.acked();
            }
            _ => return seed,
        }
        let params = json!({"deviceId": id, "role": "operator"});
        acked.entry(seed).or_default().token_in_doubt = true;
        match admin.try_call("device.token.rotate", Some(params.clone())) {
            Some(Ok(v)) => {
                let a = acked.entry(seed).or_default();
                a.retired.extend(a.token.take());
                a.token = v["token"].as_str().map(str::to_string);
                killer.acked();
            }
            _ => return seed,
        }
        if seed.is_multiple_of(2) {
            match admin.try_call("device.token.revoke", Some(params)) {
                Some(Ok(_)) => {
                    let a = acked.entry(seed).or_default();
                    a.retired.extend(a.token.take());
                    killer.acked();
                }
                _ => return seed,
            }
        }
        acked.entry(seed).or_default().token_in_doubt = false;
    }
}

/// Every acknowledged approval and token is in force on the restarted gateway.
fn verify(gw: &Gateway, acked: &BTreeMap<u8, Acked>) {
    let mut admin = admin(gw).expect("admin connects after the restart");
    let list: Value = admin
        .call("device.pair.list", None)
        .expect("device.pair.list");
    let paired = list["paired"].to_string();
    for (seed, a) in acked {
        let id = DeviceKey::from_seed([*seed; 32]).id();
        if a.approved {
            assert!(paired.contains(&id), "approved device {seed} lost: {list}");
        }
        if let Some(token) = a.token.as_ref().filter(|_| !a.token_in_doubt) {
            let hello = gw.ws(by_token(gw, *seed, token)).hello();
            assert!(
                hello.is_ok(),
                "device {seed}'s acknowledged token refused: {hello:?}"
            );
        }
        for old in &a.retired {
            let hello = gw.ws(by_token(gw, *seed, old)).hello();
            assert!(hello.is_err(), "device {seed}'s retired token accepted");
        }
    }
}

fn kill_9_loses_nothing_acknowledged(shell: Shell) {
    let opts = options();
    let mut gw = opts.start(shell);
    let mut rng = Rng::new();
    let mut acked = BTreeMap::new();
    let mut seed = 0u8;
    for round in 0..ROUNDS {
        // Odd rounds: killed right after a random "ok"; even rounds: at a random moment, which
        // lands anywhere in an operation (a torn write must not corrupt the store).
        let pid = gw.pid();
        let mut killer = AckKiller {
            pid,
            left: (round % 2 == 1).then(|| 1 + rng.below(8)),
        };
        let delay = Duration::from_millis(20 + rng.below(400));
        let timer = (round % 2 == 0).then(|| {
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            })
        });
        seed = churn(&gw, &mut acked, seed, &mut killer);
        if let Some(timer) = timer {
            timer.join().expect("killer thread");
        }
        gw = opts.crash_and_restart(shell, gw);
        verify(&gw, &acked);
    }
    // Each odd round is killed only after at least one acknowledged approval, so at least
    // ROUNDS / 2 ran whatever the machine's load; the even rounds' timed kills may land before
    // any operation of theirs.
    let approved = acked.values().filter(|a| a.approved).count();
    assert!(approved >= ROUNDS / 2, "too few operations ran: {acked:?}");
}

both!(kill_9_loses_nothing_acknowledged);
