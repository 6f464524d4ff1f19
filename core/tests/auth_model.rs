//! Property test: over generated modes, credentials, devices, localities and clients, the
//! gateway's admission decision matches a small reference model written here independently.

use std::net::SocketAddr;
use std::time::Instant;

use clawgate_core::Config;
use clawgate_core::device::{DeviceKey, b64url};
use clawgate_core::fuzzing::sim::*;
use clawgate_core::pairing::{DeviceMeta, PairingStore, PendingKind, PendingRequest};
use clawgate_core::scopes::Role;
use proptest::prelude::*;

const SECRET: &str = "s3cret";
const ALL: [&str; 3] = ["operator.read", "operator.write", "operator.admin"];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    None,
    Token,
    Password,
}

#[derive(Clone, Copy, Debug)]
enum Cred {
    Absent,
    Right,
    Wrong,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Place {
    Loopback,
    Remote,
    LoopbackLocalOrigin,
    LoopbackForeignOrigin,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    CliCli,
    CliProbe,
    Test,
    Node,
}

#[derive(Clone, Debug)]
struct Case {
    mode: Mode,
    token: Cred,
    password: Cred,
    device: bool,
    paired_scopes: Option<Vec<usize>>,
    place: Place,
    kind: Kind,
    scopes: Vec<usize>,
}

fn case() -> impl Strategy<Value = Case> {
    let cred = prop_oneof![Just(Cred::Absent), Just(Cred::Right), Just(Cred::Wrong)];
    (
        prop_oneof![Just(Mode::None), Just(Mode::Token), Just(Mode::Password)],
        cred.clone(),
        cred,
        any::<bool>(),
        proptest::option::of(proptest::collection::vec(0usize..3, 0..3)),
        prop_oneof![
            Just(Place::Loopback),
            Just(Place::Remote),
            Just(Place::LoopbackLocalOrigin),
            Just(Place::LoopbackForeignOrigin)
        ],
        prop_oneof![
            Just(Kind::CliCli),
            Just(Kind::CliProbe),
            Just(Kind::Test),
            Just(Kind::Node)
        ],
        proptest::collection::vec(0usize..3, 0..3),
    )
        .prop_map(
            |(mode, token, password, device, paired_scopes, place, kind, scopes)| Case {
                mode,
                token,
                password,
                device,
                paired_scopes,
                place,
                kind,
                scopes,
            },
        )
}

fn names(idx: &[usize]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in idx {
        let s = ALL[*i].to_string();
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// The reference model: `Some(scopes)` when admitted.
fn model(c: &Case) -> Option<Vec<String>> {
    let origin_foreign = c.place == Place::LoopbackForeignOrigin;
    if origin_foreign {
        return None; // CSWSH: a foreign browser origin never gets in
    }
    let local = matches!(c.place, Place::Loopback | Place::LoopbackLocalOrigin);
    let has_origin = c.place == Place::LoopbackLocalOrigin;
    let secret_ok = match c.mode {
        Mode::None => local,
        Mode::Token | Mode::Password => {
            matches!(c.token, Cred::Right) || matches!(c.password, Cred::Right)
        }
    };
    if !secret_ok {
        return None;
    }
    let requested = if c.kind == Kind::Node {
        Vec::new()
    } else {
        names(&c.scopes)
    };
    if !c.device {
        if c.kind == Kind::Node {
            return None;
        }
        return Some(if local && !has_origin && c.kind == Kind::CliCli {
            requested
        } else {
            Vec::new()
        });
    }
    let paired_ok = match &c.paired_scopes {
        Some(p) if c.kind != Kind::Node => {
            let granted = names(p);
            requested.iter().all(|r| {
                granted.iter().any(|g| {
                    g == r
                        || g == "operator.admin"
                        || (g == "operator.write" && r == "operator.read")
                })
            })
        }
        _ => false,
    };
    if paired_ok || local {
        Some(requested)
    } else {
        None
    }
}

fn run(c: &Case) -> Option<Vec<String>> {
    let mut cfg = Config::local_default();
    cfg = match c.mode {
        Mode::None => cfg,
        Mode::Token => cfg.with_token(SECRET),
        Mode::Password => cfg.with_password(SECRET),
    };
    let key = DeviceKey::from_seed([77; 32]);
    let mut store = PairingStore::default();
    if let Some(p) = &c.paired_scopes {
        let req = PendingRequest {
            request_id: "r".into(),
            kind: PendingKind::Device,
            device_id: key.id(),
            public_key: b64url(&key.public_raw()),
            meta: DeviceMeta::default(),
            roles: vec!["operator".into()],
            scopes: names(p),
            caps: vec![],
            commands: vec![],
            remote_ip: None,
            silent: false,
            ts: 0,
            expires_at_ms: u64::MAX,
        };
        store.approve_device(&req, 0);
    }
    let mut p = Sim::new(Instant::now(), cfg, store);
    let mut cc = cli(None);
    let pick = |cred: Cred| match cred {
        Cred::Absent => None,
        Cred::Right => Some(SECRET.to_string()),
        Cred::Wrong => Some("wrong".to_string()),
    };
    cc.token = pick(c.token);
    cc.password = pick(c.password);
    match c.kind {
        Kind::CliCli => {}
        Kind::CliProbe => cc.client.mode = "probe".into(),
        Kind::Test => {
            cc.client.id = "test".into();
            cc.client.mode = "test".into();
        }
        Kind::Node => {
            cc.client.id = "node-host".into();
            cc.client.mode = "node".into();
            cc.role = Role::Node;
        }
    }
    cc.scopes = if c.kind == Kind::Node {
        vec![]
    } else {
        names(&c.scopes)
    };
    if c.device {
        cc.device = Some(key);
    }
    let peer: SocketAddr = match c.place {
        Place::Remote => remote(),
        _ => loopback(),
    };
    cc.origin = match c.place {
        Place::LoopbackLocalOrigin => Some("http://127.0.0.1:5173".into()),
        Place::LoopbackForeignOrigin => Some("https://evil.example".into()),
        _ => None,
    };
    let id = p.open_client(cc, peer);
    p.settle();
    let hello = p.hello(id)?;
    let scopes = hello["auth"]["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    Some(scopes)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn admission_matches_the_reference_model(c in case()) {
        let got = run(&c);
        prop_assert_eq!(&got, &model(&c), "case {:?}", c);
        // The invariants, stated directly as well.
        if c.mode != Mode::None && !matches!(c.token, Cred::Right) && !matches!(c.password, Cred::Right) {
            prop_assert!(got.is_none(), "admitted without the secret");
        }
        if c.mode == Mode::None && c.place == Place::Remote {
            prop_assert!(got.is_none(), "remote treated as local");
        }
        let cli_exception = c.kind == Kind::CliCli && c.place == Place::Loopback;
        if !c.device && !cli_exception {
            prop_assert!(got.as_ref().is_none_or(|s| s.is_empty()), "scopes without a paired device");
        }
    }
}
