//! `inventory-memory`: the heap the token inventory costs for a workspace of N tokens, read
//! whole (`list_managed_tokens`: the body and a `Vec` of every token) and streamed
//! (`visit_managed_tokens` into the inventory's tally, as the operator runs it). The emulator
//! runs in a child process (this binary again, `--serve`), so only the client's heap is counted
//! here. Prints a Markdown table.
//!
//!   cargo run -q -p bench --bin inventory-memory -- --tokens 50000

use std::{
    alloc::{GlobalAlloc, Layout, System},
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::Instant,
};

use anyhow::Context;
use clap::Parser;
use databricks_client::{ClientConfig, Credentials, ManagedTokenFilter, WorkspaceClient};
use databricks_emulator::{Emulator, EmulatorConfig, SeedToken};
use databricks_token_operator::crd::InventorySpec;
use databricks_token_operator::inventory::{Judge, Tally};

/// The system allocator, counting live bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grown = new_size - layout.size();
                let live = LIVE.fetch_add(grown, Ordering::Relaxed) + grown;
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Parser)]
struct Args {
    /// Tokens in the workspace.
    #[arg(long, default_value_t = 50_000)]
    tokens: usize,
    /// Internal: serve an emulator seeded with `--tokens` tokens; print "PORT PAT" and wait.
    #[arg(long, hide = true)]
    serve: bool,
}

/// A realistic comment length mix: empty, short, tagged.
fn comment(i: usize) -> String {
    match i % 4 {
        0 => String::new(),
        1 => format!("notebook {i}"),
        2 => format!("[dbtoken.dev/uid=0b8f3c52-7d4e-4a61-9c1a-{i:012}] nightly reports job"),
        _ => format!("managed by terraform, workspace automation pipeline {i}"),
    }
}

async fn serve(tokens: usize) -> anyhow::Result<()> {
    let emulator = Emulator::start(EmulatorConfig::default()).await?;
    let admin = emulator.add_user("admin@example.com", true);
    let users: Vec<i64> = (0..50)
        .map(|u| emulator.add_user(&format!("user{u}@example.com"), false).id)
        .collect();
    for i in 0..tokens.saturating_sub(1 + users.len()) {
        emulator.seed_token(&SeedToken {
            owner_id: users[i % users.len()],
            created_by_id: None,
            comment: comment(i),
            lifetime_seconds: (i % 3 != 0).then_some(86_400 * (1 + i as i64 % 400)),
        });
    }
    println!("{} {}", emulator.addr().port(), admin.pat);
    // Until the parent closes our stdin.
    let _ = tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await;
    Ok(())
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Peak heap above what was live before, while `f` runs, and how long it took.
async fn measure<T>(f: impl std::future::Future<Output = T>) -> (T, usize, f64) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let started = Instant::now();
    let out = f.await;
    let secs = started.elapsed().as_secs_f64();
    (out, PEAK.load(Ordering::Relaxed) - before, secs)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.serve {
        return serve(args.tokens).await;
    }
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--serve", "--tokens", &args.tokens.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("start the emulator")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("emulator stdout")?).read_line(&mut line)?;
    let (port, pat) = line
        .trim()
        .split_once(' ')
        .context("emulator port and PAT")?;
    let client = WorkspaceClient::new(ClientConfig {
        allow_http: true,
        request_timeout: std::time::Duration::from_secs(120),
        ..ClientConfig::new(
            format!("http://127.0.0.1:{port}"),
            Credentials::Pat {
                token: pat.to_string().into(),
            },
        )
    })?;
    let filter = ManagedTokenFilter::default();
    // Warm up (connection, auth) so neither measurement pays for it.
    client.current_user().await?;

    let (whole, whole_peak, whole_secs) = measure(client.list_managed_tokens(&filter)).await;
    let listed = whole?.len();

    let spec: InventorySpec = serde_json::from_str("{}")?;
    let exists = |_: &str| false;
    let judge = Judge {
        now: databricks_token_operator::now_millis(),
        warning_window_ms: 30 * 86_400_000,
        me: Some(1),
        exists: &exists,
    };
    let (tally, stream_peak, stream_secs) = measure(client.visit_managed_tokens(
        &filter,
        || Tally::new(false),
        |t, token| t.add(&spec, &judge, token),
    ))
    .await;
    let tally = tally?;
    let (per_token, per_token_peak, per_token_secs) = measure(client.visit_managed_tokens(
        &filter,
        || Tally::new(true),
        |t, token| t.add(&spec, &judge, token),
    ))
    .await;
    let per_token = per_token?;
    drop(child.stdin.take());
    let _ = child.wait();

    anyhow::ensure!(listed == args.tokens && tally.total() as usize == args.tokens);
    println!(
        "| {} tokens, one list call | peak heap | time |",
        args.tokens
    );
    println!("|---|---|---|");
    println!(
        "| whole body + Vec<TokenInfo> (`list_managed_tokens`) | {} | {whole_secs:.2} s |",
        mib(whole_peak)
    );
    println!(
        "| streamed into the inventory tally (`visit_managed_tokens`) | {} | {stream_secs:.2} s |",
        mib(stream_peak)
    );
    println!(
        "| streamed, with the opt-in per-token series ({} kept) | {} | {per_token_secs:.2} s |",
        per_token.per_token.map_or(0, |p| p.len()),
        mib(per_token_peak)
    );
    println!(
        "(owners: {}, classes: {:?})",
        tally.by_owner.len(),
        tally.counts
    );
    Ok(())
}
