//! The fleet against a real etcd (started here, on loopback, in a temporary directory): pushes
//! and their guard, scoped pushes, rollback, waves halted by a NACK or by drops that jump, and
//! the agent's ACK/NACK on good and bad values, with in-memory gateways (the userspace engine,
//! nothing attached).
//! The same with real gateways in namespaces: `e2e_fleet.rs`.

use std::{path::Path, sync::Arc, time::Duration};

use hutong::{fleet::memory::MemoryGateway, lab::etcd::Etcd};
use hutong_fleet::{
    Client, Endpoints,
    agent::{self, AgentOptions},
    keys::{self, GatewayKey},
    push::{self, PushError, PushOptions},
    records::{RolloutState, Verdict},
    rollout, store,
};

const FLEET: &str = include_str!("../configs/examples/fleet.yaml");

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn plan(text: &str) -> control::LoadedPlan {
    let lp = control::load_str(text, Path::new("fleet.yaml")).unwrap();
    control::validate(&lp).unwrap();
    lp
}

/// The example with `from` replaced by `to` (once, and it must be there).
fn edited(from: &str, to: &str) -> String {
    assert!(FLEET.contains(from), "{from}");
    FLEET.replacen(from, to, 1)
}

async fn client(etcd: &Etcd) -> Client {
    store::connect(&Endpoints::parse(&etcd.urls(), None).unwrap()).await.unwrap()
}

async fn push_plan(c: &mut Client, text: &str, scope: Option<&str>) -> Result<push::Committed, PushError> {
    let options = PushOptions { scope: scope.map(String::from), ..PushOptions::default() };
    let p = push::prepare(c, &plan(text), options).await?;
    push::commit(c, &p).await
}

fn start() -> Etcd {
    Etcd::start(1).expect("etcd starts (scripts/setup.sh installs it)")
}

#[test]
fn two_pushes_from_one_read_one_lands_and_the_other_is_told_why() {
    let etcd = start();
    rt().block_on(async {
        let mut c = client(&etcd).await;
        push_plan(&mut c, FLEET, None).await.unwrap();
        // Two operators read the same store and each change their own node.
        let a = plan(&edited("to: 198.18.20.0/24", "to: 198.18.21.0/24"));
        let b = plan(&edited("to: 198.18.140.0/24", "to: 198.18.141.0/24"));
        let pa = push::prepare(&mut c, &a, PushOptions::default()).await.unwrap();
        let pb = push::prepare(&mut c, &b, PushOptions::default()).await.unwrap();
        assert_eq!((pa.number(), pb.number()), (2, 2));
        // At the same moment: exactly one lands.
        let (mut c1, mut c2) = (client(&etcd).await, client(&etcd).await);
        let (ra, rb) = tokio::join!(push::commit(&mut c1, &pa), push::commit(&mut c2, &pb));
        let (won, lost) = match (&ra, &rb) {
            (Ok(_), Err(e)) => ("a", e),
            (Err(e), Ok(_)) => ("b", e),
            other => panic!("exactly one push must land: {other:?}"),
        };
        let text = lost.to_string();
        assert!(matches!(lost, PushError::Conflict(_)), "{text}");
        assert!(text.contains("push 2") && text.contains("nothing was written"), "{text}");
        // Nothing of the loser is in the store: its gateway's desired config is push 1's.
        let snap = store::read(&mut c, None).await.unwrap();
        assert_eq!(snap.push(), 2);
        let (winner_gw, loser_gw) =
            if won == "a" { ("gw-changsha", "gw-zhuzhou") } else { ("gw-zhuzhou", "gw-changsha") };
        let desired = |id: &str| snap.gateways[id].desired.as_ref().unwrap().value.as_ref().unwrap().push;
        assert_eq!(desired(winner_gw), 2);
        assert_eq!(desired(loser_gw), 1);
        eprintln!("conflict: push {won} landed; the other was told: {text}");
    });
}

#[test]
fn a_scoped_push_replaces_its_subtree_only_and_the_whole_plan_must_stay_valid() {
    let etcd = start();
    rt().block_on(async {
        let mut c = client(&etcd).await;
        // Nothing to scope into yet.
        let err = push_plan(&mut c, FLEET, Some("430102")).await.unwrap_err().to_string();
        assert!(err.contains("push the whole plan first"), "{err}");
        push_plan(&mut c, FLEET, None).await.unwrap();
        // The local file changes Furong (in scope) and Zhuzhou (not): only Furong lands.
        let both = edited("to: 198.18.70.0/24", "to: 198.18.71.0/24").replacen(
            "to: 198.18.140.0/24",
            "to: 198.18.141.0/24",
            1,
        );
        let done = push_plan(&mut c, &both, Some("430102")).await.unwrap();
        assert_eq!(done.rollout.waves, vec![vec!["gw-furong".to_string()]]);
        let fleet_plan = hutong_fleet::rollback::current_plan(&mut c).await.unwrap();
        assert!(
            fleet_plan.contains("198.18.71.0/24") && fleet_plan.contains("198.18.140.0/24"),
            "{fleet_plan}"
        );
        // Zhuzhou's operator renames its legacy network to hall-2 (pushed for 430200); Furong's
        // operator, whose copy of the plan predates that, takes the same id: the file is valid
        // alone, the merged plan is not (an id has one owner), and nothing is written.
        let zhuzhou = FLEET.replace("zhuzhou-hall", "hall-2");
        push_plan(&mut c, &zhuzhou, Some("430200")).await.unwrap();
        let clash = both.replace("furong-hall", "hall-2");
        let err = push_plan(&mut c, &clash, Some("430102")).await.unwrap_err();
        assert!(matches!(err, PushError::Invalid(_)), "{err}");
        let text = err.to_string();
        assert!(text.contains("node 430102") && text.contains("hall-2"), "{text}");
        eprintln!("refused: {text}");
        assert_eq!(store::read(&mut c, None).await.unwrap().push(), 3, "nothing was written");
        // A scope the local plan does not have.
        let err = push_plan(&mut c, FLEET, Some("439999")).await.unwrap_err().to_string();
        assert!(err.contains("no node 439999"), "{err}");
    });
}

/// Drives push `push`'s rollout to its end, as `hutong push` does after its commit.
async fn follow(etcd: &Etcd, c: &mut Client, push: u64) -> hutong_fleet::records::Rollout {
    let ep = Endpoints::parse(&etcd.urls(), None).unwrap();
    rollout::drive(c, &ep, push, Default::default(), &mut |_| {}).await.unwrap()
}

/// An agent for `id` on an in-memory gateway running `config`.
fn agent_for(etcd: &Etcd, id: &str) -> (Arc<MemoryGateway>, tokio::task::JoinHandle<()>) {
    let config = control::compile(&plan(FLEET), id).unwrap();
    let gw = Arc::new(MemoryGateway::new(config).unwrap());
    let mut opts = AgentOptions::new(Endpoints::parse(&etcd.urls(), None).unwrap(), id);
    // Short, so that a dead agent's status goes within the test's patience.
    opts.lease_ttl = Duration::from_secs(3);
    opts.max_backoff = Duration::from_secs(2);
    let task = tokio::spawn(agent::run(opts, gw.clone(), 1));
    (gw, task)
}

/// Waits until `id` reports `verdict` for push `push` (its desired push).
async fn wait_verdict(
    c: &mut Client,
    id: &str,
    verdict: Verdict,
    push: u64,
) -> hutong_fleet::records::Status {
    for _ in 0..200 {
        let snap = store::read(c, None).await.unwrap();
        if let Some(s) =
            snap.gateways.get(id).and_then(|g| g.status.as_ref()).and_then(|s| s.value.clone().ok())
            && s.verdict == verdict
            && s.desired_push == push
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{id} never reported {verdict:?} for push {push}");
}

#[test]
fn the_agent_acks_good_configs_and_nacks_bad_values_changing_nothing() {
    let etcd = start();
    rt().block_on(async {
        let mut c = client(&etcd).await;
        push_plan(&mut c, FLEET, None).await.unwrap();
        let (gw, task) = agent_for(&etcd, "gw-changsha");
        let s = wait_verdict(&mut c, "gw-changsha", Verdict::Ack, 1).await;
        assert_eq!(s.applied_push, 1);
        // A policy change: applied, ACKed.
        let text = edited("to: 198.18.20.0/24", "to: 198.18.22.0/24");
        push_plan(&mut c, &text, None).await.unwrap();
        wait_verdict(&mut c, "gw-changsha", Verdict::Ack, 2).await;
        let running = gw.running();
        assert!(running.netmaps.iter().any(|n| n.outside.to_string() == "198.18.22.0/24"));
        let applies = gw.applies();
        let key = keys::gateway(&["430000".into(), "430100".into()], "gw-changsha", GatewayKey::Desired);
        // Garbage: NACK, nothing changes.
        etcd.put(&key, "{not json").unwrap();
        let s = wait_verdict(&mut c, "gw-changsha", Verdict::Nack, 0).await;
        assert!(s.errors[0].contains("not a desired config"), "{:?}", s.errors);
        assert_eq!(s.applied_push, 2);
        // Another gateway's config in this one's key: NACK, nothing changes.
        let other = control::compile(&plan(FLEET), "gw-zhuzhou").unwrap();
        let value = serde_json::json!({ "gateway": "gw-changsha", "push": 7, "config": serde_json::from_str::<serde_json::Value>(&other.to_json()).unwrap() });
        etcd.put(&key, &value.to_string()).unwrap();
        let s = wait_verdict(&mut c, "gw-changsha", Verdict::Nack, 7).await;
        assert!(s.errors[0].contains("gw-zhuzhou"), "{:?}", s.errors);
        // A config that does not validate.
        let value = serde_json::json!({ "gateway": "gw-changsha", "push": 8, "config": { "gateway": "gw-changsha" } });
        etcd.put(&key, &value.to_string()).unwrap();
        let s = wait_verdict(&mut c, "gw-changsha", Verdict::Nack, 8).await;
        assert!(s.errors[0].contains("invalid config"), "{:?}", s.errors);
        assert_eq!(gw.applies(), applies, "no bad value changed the gateway");
        assert_eq!(gw.running(), running);
        // The status lives under a lease: the agent gone, it goes.
        task.abort();
        let mut gone = false;
        for _ in 0..150 {
            let snap = store::read(&mut c, None).await.unwrap();
            if snap.gateways["gw-changsha"].status.is_none() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(gone, "a dead gateway's status expires with its lease");
    });
}

#[test]
fn a_nack_halts_the_rollout_before_the_next_wave_and_rollback_restores_the_plan() {
    let etcd = start();
    rt().block_on(async {
        let mut c = client(&etcd).await;
        push_plan(&mut c, FLEET, None).await.unwrap();
        let agents: Vec<_> =
            ["gw-changsha", "gw-furong", "gw-zhuzhou"].iter().map(|id| agent_for(&etcd, id)).collect();
        for id in ["gw-changsha", "gw-furong", "gw-zhuzhou"] {
            wait_verdict(&mut c, id, Verdict::Ack, 1).await;
        }
        // Zhuzhou's uplink renamed (the gateway lacks it: it refuses), Furong's netmap moved.
        let text = edited(
            "name: uplink0, role: extranet, address: 198.19.1.1/24",
            "name: uplink9, role: extranet, address: 198.19.1.1/24",
        )
        .replacen("to: 198.18.70.0/24", "to: 198.18.72.0/24", 1);
        let options = PushOptions {
            waves: vec!["prefecture".parse().unwrap(), "rest".parse().unwrap()],
            settle_s: 0.5,
            ..PushOptions::default()
        };
        let p = push::prepare(&mut c, &plan(&text), options).await.unwrap();
        assert_eq!(p.waves, vec![vec!["gw-zhuzhou".to_string()], vec!["gw-furong".to_string()]]);
        let done = push::commit(&mut c, &p).await.unwrap();
        let r = follow(&etcd, &mut c, done.push).await;
        assert_eq!(r.state, RolloutState::Halted);
        assert!(r.reason.contains("gw-zhuzhou") && r.reason.contains("ports cannot change"), "{}", r.reason);
        let snap = store::read(&mut c, None).await.unwrap();
        let furong = &snap.gateways["gw-furong"];
        assert_eq!(
            furong.desired.as_ref().unwrap().value.as_ref().unwrap().push,
            1,
            "wave 2 was not written"
        );
        assert!(furong.staged.is_some());
        // A push now is refused until the halted rollout is dealt with.
        let err = push_plan(&mut c, FLEET, None).await.unwrap_err().to_string();
        assert!(err.contains("halted"), "{err}");
        let aborted = rollout::abort(&mut c).await.unwrap();
        assert_eq!(aborted.state, RolloutState::Aborted);
        assert!(store::read(&mut c, None).await.unwrap().gateways["gw-furong"].staged.is_none());
        // Roll back to push 1 (the plan before): gw-zhuzhou's desired config is push 1's again.
        let p = hutong_fleet::rollback::prepare(
            &mut c,
            None,
            PushOptions { settle_s: 0.2, ..PushOptions::default() },
        )
        .await
        .unwrap();
        assert_eq!(p.options.what, "rollback to push 1");
        let changed: Vec<&String> = p.diffs.iter().map(|(id, _)| id).collect();
        assert_eq!(changed, ["gw-zhuzhou"]);
        let done = push::commit(&mut c, &p).await.unwrap();
        let r = follow(&etcd, &mut c, done.push).await;
        assert_eq!(r.state, RolloutState::Done, "{}", r.reason);
        let s = wait_verdict(&mut c, "gw-zhuzhou", Verdict::Ack, 3).await;
        assert_eq!(s.applied_push, 3);
        for (_, t) in agents {
            t.abort();
        }
    });
}

#[test]
fn drops_that_jump_while_a_wave_settles_halt_the_rollout_and_quiet_ones_do_not() {
    let etcd = start();
    rt().block_on(async {
        let mut c = client(&etcd).await;
        push_plan(&mut c, FLEET, None).await.unwrap();
        let ids = ["gw-changsha", "gw-furong", "gw-zhuzhou"];
        let agents: Vec<_> = ids.iter().map(|id| agent_for(&etcd, id)).collect();
        for id in ids {
            wait_verdict(&mut c, id, Verdict::Ack, 1).await;
        }
        let gateway = |id: &str| agents[ids.iter().position(|x| *x == id).unwrap()].0.clone();
        // Every gateway's config changes (a root policy), in two waves: a canary, the rest.
        let text = |port: u16| {
            let anchor = "    name: Hunan\n    level: province\n";
            let policy = format!(
                "    policies: [{{ name: deny-{port}, protocol: tcp, ports: {port}, action: deny }}]\n"
            );
            edited(anchor, &format!("{anchor}{policy}"))
        };
        let options = || PushOptions {
            waves: vec!["1".parse().unwrap(), "rest".parse().unwrap()],
            settle_s: 2.0,
            max_drop_rate: 100.0,
            ..PushOptions::default()
        };
        // Drops counted on `id` once its ACK of `push` (with the counters as they were) is in
        // the store, while its wave settles.
        let after_ack = |id: &str, push: u64, reason: &'static str, n: u64| {
            let (etcd_urls, gw, id) = (etcd.urls(), gateway(id), id.to_string());
            tokio::spawn(async move {
                let mut watcher = store::connect(&Endpoints::parse(&etcd_urls, None).unwrap()).await.unwrap();
                wait_verdict(&mut watcher, &id, Verdict::Ack, push).await;
                gw.count_drops(reason, n);
            })
        };
        // Quiet counters (a few drops while it settles, below the allowance): every wave goes out.
        let p = push::prepare(&mut c, &plan(&text(1001)), options()).await.unwrap();
        let canary = p.waves[0][0].clone();
        let done = push::commit(&mut c, &p).await.unwrap();
        let inject = after_ack(&canary, done.push, "no_route", 3);
        let r = follow(&etcd, &mut c, done.push).await;
        inject.await.unwrap();
        assert_eq!(r.state, RolloutState::Done, "{}", r.reason);
        // The check's answer carries them: they were counted while the wave settled.
        let snap = store::read(&mut c, None).await.unwrap();
        let answer = snap.gateways[&canary].status.as_ref().unwrap().value.clone().unwrap();
        assert_eq!(answer.health.drops.get("no_route"), Some(&3), "{answer:?}");
        assert!(answer.check_at > 0.0, "{answer:?}");
        // The canary's drops jump once it has taken the push: the rollout halts before wave 2.
        let p = push::prepare(&mut c, &plan(&text(1002)), options()).await.unwrap();
        assert_eq!(p.waves[0], std::slice::from_ref(&canary));
        let done = push::commit(&mut c, &p).await.unwrap();
        let inject = after_ack(&canary, done.push, "policy_deny", 1_000_000);
        let r = follow(&etcd, &mut c, done.push).await;
        inject.await.unwrap();
        assert_eq!(r.state, RolloutState::Halted);
        assert!(r.reason.contains(&canary) && r.reason.contains("policy_deny drops jumped"), "{}", r.reason);
        let snap = store::read(&mut c, None).await.unwrap();
        for id in ids.iter().filter(|id| **id != canary) {
            let g = &snap.gateways[*id];
            assert_eq!(
                g.desired.as_ref().unwrap().value.as_ref().unwrap().push,
                2,
                "{id}: wave 2 not written"
            );
            assert!(g.staged.is_some(), "{id}");
        }
        for (_, t) in agents {
            t.abort();
        }
    });
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`;
/// and a second client certificate from another CA (which etcd must refuse).
fn certificates(dir: &Path) -> (hutong::lab::etcd::Tls, hutong_fleet::TlsFiles) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType,
    };
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let ca = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), Issuer::new(params, key))
    };
    let leaf = |issuer: &Issuer<'_, KeyPair>, cn: &str, server: bool| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        if server {
            params.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        } else {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        (params.signed_by(&key, issuer).unwrap().pem(), key.serialize_pem())
    };
    let (ca_pem, issuer) = ca("hutong test CA");
    let (server, server_key) = leaf(&issuer, "etcd", true);
    let (client, client_key) = leaf(&issuer, "gw-changsha", false);
    let (_, other) = ca("another CA");
    let (stranger, stranger_key) = leaf(&other, "stranger", false);
    write("stranger.pem", stranger);
    write("stranger-key.pem", stranger_key);
    let ca_path = write("ca.pem", ca_pem);
    let server_tls = hutong::lab::etcd::Tls {
        ca: ca_path.clone(),
        cert: write("server.pem", server),
        key: write("server-key.pem", server_key),
        client_cert: write("client.pem", client),
        client_key: write("client-key.pem", client_key),
    };
    let files = hutong_fleet::TlsFiles {
        ca: ca_path,
        cert: server_tls.client_cert.clone(),
        key: server_tls.client_key.clone(),
    };
    (server_tls, files)
}

#[test]
fn etcd_over_tls_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client_files) = certificates(dir.path());
    let etcd = Etcd::start_tls(server).expect("etcd starts with TLS");
    assert!(etcd.urls().starts_with("https://"));
    rt().block_on(async {
        let ep = Endpoints::parse(&etcd.urls(), Some(client_files.clone())).unwrap();
        let mut c = store::connect(&ep).await.expect("a client certificate of the trusted CA is let in");
        let p = push::prepare(&mut c, &plan(FLEET), PushOptions::default()).await.unwrap();
        push::commit(&mut c, &p).await.unwrap();
        assert_eq!(store::read(&mut c, None).await.unwrap().push(), 1);
        // https without a certificate is refused at once (the command line says what to give).
        let err = Endpoints::parse(&etcd.urls(), None).unwrap_err().to_string();
        assert!(err.contains("--etcd-ca"), "{err}");
        // A certificate from another CA: refused by etcd.
        let stranger = hutong_fleet::TlsFiles {
            cert: dir.path().join("stranger.pem"),
            key: dir.path().join("stranger-key.pem"),
            ..client_files
        };
        let ep = Endpoints::parse(&etcd.urls(), Some(stranger)).unwrap();
        assert!(store::connect(&ep).await.is_err(), "a stranger's certificate must not get in");
        // Plain http to the TLS port: refused.
        let plain = etcd.urls().replace("https://", "http://");
        assert!(store::connect(&Endpoints::parse(&plain, None).unwrap()).await.is_err());
    });
}

#[test]
fn a_gateway_removed_from_the_plan_goes_idle_and_comes_back_when_it_is_added_again() {
    let etcd = start();
    rt().block_on(async {
        let mut c = client(&etcd).await;
        push_plan(&mut c, FLEET, None).await.unwrap();
        let (_gw, task) = agent_for(&etcd, "gw-furong");
        wait_verdict(&mut c, "gw-furong", Verdict::Ack, 1).await;
        // Furong (and its gateway) leaves the plan: its keys and home go.
        let from = FLEET.find("        children:\n          - code: \"430102\"").unwrap();
        let to = FLEET.find("      - code: \"430200\"").unwrap();
        let without = format!("{}{}", &FLEET[..from], &FLEET[to..]);
        push_plan(&mut c, &without, None).await.unwrap();
        let mut gone = false;
        for _ in 0..150 {
            let snap = store::read(&mut c, None).await.unwrap();
            if !snap.gateways.contains_key("gw-furong") && !snap.homes.contains_key("gw-furong") {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(gone, "a removed gateway's keys and status go");
        // Back in the plan: the agent finds its home again and takes the push.
        push_plan(&mut c, FLEET, None).await.unwrap();
        let s = wait_verdict(&mut c, "gw-furong", Verdict::Ack, 3).await;
        assert_eq!(s.applied_push, 3);
        task.abort();
    });
}
