//! Leader election against a real kube-apiserver: one leader at a time, hand-over on release,
//! take-over after a crash, and a leader that cannot renew steps down before its Lease expires.

mod support;

use std::time::Duration;

use databricks_token_operator::leader::{LeaderElector, Phase};
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use support::cluster::{self, TestNamespace};
use tokio::time::{Instant, timeout};

const LEASE: &str = "databricks-token-operator";

async fn elector(ns: &TestNamespace, identity: &str, duration: Duration) -> LeaderElector {
    LeaderElector::start(ns.client.clone(), &ns.name, LEASE, identity, duration)
        .await
        .expect("start elector")
}

async fn holder(ns: &TestNamespace) -> Option<String> {
    let lease = Api::<Lease>::namespaced(ns.client.clone(), &ns.name)
        .get(LEASE)
        .await
        .expect("get Lease");
    lease.spec.and_then(|s| s.holder_identity)
}

#[tokio::test]
async fn only_one_of_two_candidates_leads() {
    let ns = cluster::namespace("leader-one").await;
    let mut a = elector(&ns, "a", Duration::from_secs(3)).await;
    let mut b = elector(&ns, "b", Duration::from_secs(3)).await;
    let first = timeout(Duration::from_secs(20), async {
        tokio::select! {
            r = a.acquire() => { r.expect("a"); "a" }
            r = b.acquire() => { r.expect("b"); "b" }
        }
    })
    .await
    .expect("someone leads within 20 s");
    let (leader, other) = if first == "a" { (&a, &b) } else { (&b, &a) };
    assert_eq!(leader.phase(), Phase::Leading);
    assert_eq!(holder(&ns).await.as_deref(), Some(first));

    // Through three lease durations of renewals the other never leads.
    let mut other_phase = other.subscribe();
    let changed = timeout(Duration::from_secs(9), other_phase.changed()).await;
    assert!(
        changed.is_err(),
        "the standby changed phase: {:?}",
        other.phase()
    );
    assert_eq!(leader.phase(), Phase::Leading);
    assert_eq!(holder(&ns).await.as_deref(), Some(first));
}

#[tokio::test]
async fn releasing_hands_leadership_over_without_waiting_for_expiry() {
    let ns = cluster::namespace("leader-release").await;
    // A long lease: a hand-over well inside it can only come from the release.
    let duration = Duration::from_secs(30);
    let mut a = elector(&ns, "a", duration).await;
    timeout(Duration::from_secs(20), a.acquire())
        .await
        .expect("a leads in time")
        .expect("a leads");
    let mut b = elector(&ns, "b", duration).await;
    assert_eq!(b.phase(), Phase::Candidate);

    let released = Instant::now();
    a.release().await;
    timeout(Duration::from_secs(20), b.acquire())
        .await
        .expect("b leads well before a's lease would expire")
        .expect("b leads");
    assert!(released.elapsed() < duration);
    assert_eq!(holder(&ns).await.as_deref(), Some("b"));
}

#[tokio::test]
async fn a_dead_holders_lease_is_taken_once_it_expires() {
    let ns = cluster::namespace("leader-dead").await;
    let now = MicroTime(Timestamp::now());
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(LEASE.into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("crashed-replica".into()),
            lease_duration_seconds: Some(3),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(4),
            ..Default::default()
        }),
    };
    Api::<Lease>::namespaced(ns.client.clone(), &ns.name)
        .create(&PostParams::default(), &lease)
        .await
        .expect("create Lease");

    let started = Instant::now();
    let mut b = elector(&ns, "b", Duration::from_secs(3)).await;
    timeout(Duration::from_secs(20), b.acquire())
        .await
        .expect("b takes the expired Lease in time")
        .expect("b leads");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "took the Lease before it expired"
    );
    let spec = Api::<Lease>::namespaced(ns.client.clone(), &ns.name)
        .get(LEASE)
        .await
        .expect("get Lease")
        .spec
        .expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(5));
}

#[tokio::test]
async fn a_crashed_leader_is_replaced_after_the_lease_duration() {
    let ns = cluster::namespace("leader-crash").await;
    let kubeconfig = cluster::cluster().await.kubeconfig_path().to_path_buf();
    let namespace = ns.name.clone();
    let (led_tx, led_rx) = tokio::sync::oneshot::channel();
    let (crash_tx, crash_rx) = std::sync::mpsc::channel::<()>();
    // The leader runs on a runtime of its own; dropping that runtime stops it dead, without
    // the release a clean shutdown would do, like a killed process.
    let leader = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let client = client_for(&kubeconfig, None).await;
            let mut a =
                LeaderElector::start(client, &namespace, LEASE, "a", Duration::from_secs(3))
                    .await
                    .expect("start a");
            a.acquire().await.expect("a leads");
            let _ = led_tx.send(());
            // Keep `a` (and its renewals) alive until the test pulls the plug.
            tokio::task::spawn_blocking(move || crash_rx.recv())
                .await
                .expect("wait for crash")
                .ok();
            std::mem::forget(a);
        });
        drop(rt);
    });
    timeout(Duration::from_secs(20), led_rx)
        .await
        .expect("a leads in time")
        .expect("a leads");
    let mut b = elector(&ns, "b", Duration::from_secs(3)).await;
    assert_eq!(holder(&ns).await.as_deref(), Some("a"));

    crash_tx.send(()).expect("crash a");
    leader.join().expect("leader thread");
    let crashed = Instant::now();
    timeout(Duration::from_secs(20), b.acquire())
        .await
        .expect("b takes over in time")
        .expect("b leads");
    assert!(crashed.elapsed() < Duration::from_secs(20));
    assert_eq!(holder(&ns).await.as_deref(), Some("b"));
}

#[tokio::test]
async fn a_leader_whose_lease_is_taken_reports_the_loss() {
    let ns = cluster::namespace("leader-taken").await;
    let mut a = elector(&ns, "a", Duration::from_secs(3)).await;
    timeout(Duration::from_secs(20), a.acquire())
        .await
        .expect("a leads in time")
        .expect("a leads");

    let api = Api::<Lease>::namespaced(ns.client.clone(), &ns.name);
    let mut lease = api.get(LEASE).await.expect("get Lease");
    lease.spec.as_mut().expect("spec").holder_identity = Some("intruder".into());
    api.replace(LEASE, &PostParams::default(), &lease)
        .await
        .expect("take the Lease by hand");

    timeout(Duration::from_secs(10), a.lost())
        .await
        .expect("a reports the loss within a renewal or two");
    assert_eq!(a.phase(), Phase::Lost);
    assert_eq!(holder(&ns).await.as_deref(), Some("intruder"));
}

#[tokio::test]
async fn a_leader_cut_off_from_the_api_steps_down_before_its_lease_expires() {
    let ns = cluster::namespace("leader-cut").await;
    let kubeconfig = cluster::cluster().await.kubeconfig_path().to_path_buf();
    let proxy = proxy::Proxy::start(&kubeconfig).await;
    let client = client_for(&kubeconfig, Some(proxy.addr)).await;
    let duration = Duration::from_secs(6);
    let mut a = LeaderElector::start(client, &ns.name, LEASE, "a", duration)
        .await
        .expect("start a");
    timeout(Duration::from_secs(20), a.acquire())
        .await
        .expect("a leads in time")
        .expect("a leads");

    proxy.cut();
    timeout(Duration::from_secs(20), a.lost())
        .await
        .expect("a steps down in time");
    let stepped_down = Timestamp::now();
    assert_eq!(a.phase(), Phase::Lost);

    // By then the Lease (read directly) must still be a's and unexpired: nobody else could
    // have taken it yet, so there was never a moment with two leaders.
    let spec = Api::<Lease>::namespaced(ns.client.clone(), &ns.name)
        .get(LEASE)
        .await
        .expect("get Lease")
        .spec
        .expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    let renewed = spec.renew_time.expect("renewTime").0;
    let expires = renewed + k8s_openapi::jiff::SignedDuration::from_secs(6);
    assert!(
        stepped_down < expires,
        "stepped down at {stepped_down}, after the Lease expired at {expires}"
    );
}

/// A client for the test control plane, optionally through another address (the proxy).
async fn client_for(
    kubeconfig: &std::path::Path,
    via: Option<std::net::SocketAddr>,
) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig");
    if let Some(addr) = via {
        config.cluster_url = format!("https://{addr}").parse().expect("proxy url");
    }
    // Fail fast once cut off, as a partitioned pod's requests would.
    config.connect_timeout = Some(Duration::from_secs(1));
    config.read_timeout = Some(Duration::from_secs(2));
    kube::Client::try_from(config).expect("client")
}

mod proxy {
    //! A TCP proxy to the API server that can be cut, dropping every connection (TLS passes
    //! through untouched: the server certificate is valid for 127.0.0.1).

    use std::net::SocketAddr;

    use tokio::{net::TcpListener, sync::watch};

    pub struct Proxy {
        pub addr: SocketAddr,
        cut: watch::Sender<bool>,
    }

    impl Proxy {
        pub async fn start(kubeconfig: &std::path::Path) -> Proxy {
            let upstream = upstream(kubeconfig);
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
            let addr = listener.local_addr().expect("proxy addr");
            let (cut, cut_rx) = watch::channel(false);
            let mut accept_cut = cut_rx.clone();
            tokio::spawn(async move {
                loop {
                    let (mut inbound, _) = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok(a) => a,
                            Err(_) => return,
                        },
                        _ = accept_cut.wait_for(|c| *c) => return,
                    };
                    let mut conn_cut = cut_rx.clone();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await
                        else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = conn_cut.wait_for(|c| *c) => {}
                        }
                    });
                }
            });
            Proxy { addr, cut }
        }

        /// Drop every connection and refuse new ones.
        pub fn cut(&self) {
            let _ = self.cut.send(true);
        }
    }

    fn upstream(kubeconfig: &std::path::Path) -> SocketAddr {
        let text = std::fs::read_to_string(kubeconfig).expect("read kubeconfig");
        let server = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: https://"))
            .expect("server in kubeconfig");
        server.trim().parse().expect("server address")
    }
}
