//! The per-workspace limits, measured at a server: requests per second never beyond the bucket,
//! requests in flight never beyond the cap.

use std::time::{Duration, Instant};

use databricks_client::ClientConfig;
use serde_json::json;

use crate::support::{Reply, client, config, emulator, pat, stub};

fn empty_list() -> Reply {
    Reply::json(200, json!({"token_infos": []}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_bounds_requests_per_second() {
    let server = stub(|_| empty_list()).await;
    let rps = 20.0;
    let c = client(ClientConfig {
        requests_per_second: rps,
        ..config(&server.base_url, pat("t"))
    });
    let started = Instant::now();
    let calls: Vec<_> = (0..50)
        .map(|_| {
            tokio::spawn({
                let c = c.clone();
                async move { c.list_tokens().await }
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let mut arrivals = server.log.arrivals("/api/2.0/token/list");
    arrivals.sort();
    assert_eq!(arrivals.len(), 50);
    // An even pace, no burst: by time t after the first request, at most 1 + rate * t.
    // Delays on the way can only lower these counts; 2 requests of slack cover clock skew.
    for (i, at) in arrivals.iter().enumerate() {
        let allowed = 1.0 + rps * (*at - arrivals[0]).as_secs_f64() + 2.0;
        assert!(
            (i + 1) as f64 <= allowed,
            "request {} arrived {:?} after the first",
            i + 1,
            *at - arrivals[0]
        );
    }
    // 49 requests after the first at 20/s take at least 2.45 s.
    assert!(
        started.elapsed() >= Duration::from_millis(2_350),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_cap_bounds_requests_in_flight() {
    let server = stub(|_| Reply {
        delay: Duration::from_millis(100),
        ..empty_list()
    })
    .await;
    let c = client(ClientConfig {
        max_concurrency: 3,
        ..config(&server.base_url, pat("t"))
    });
    let calls: Vec<_> = (0..12)
        .map(|_| {
            tokio::spawn({
                let c = c.clone();
                async move { c.list_tokens().await }
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(server.log.count("/api/2.0/token/list"), 12);
    assert_eq!(server.log.peak_in_flight(), 3);
}

#[tokio::test]
async fn the_limits_hold_per_client_against_the_emulator() {
    let emulator = emulator().await;
    let user = emulator.add_user("alice@example.com", false);
    let c = client(ClientConfig {
        requests_per_second: 10.0,
        ..config(&emulator.base_url(), pat(&user.pat))
    });
    let started = Instant::now();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn({
                let c = c.clone();
                async move { c.list_tokens().await }
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(emulator.stats().count_status("token/list", 200), 20);
    // 10 at once, 10 more at 10/s.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}
