//! What authentication adds to each request: `Authenticator::authenticate`
//! for the cases a server meets, over a real SQLite store.
//!
//! - an app key found in the cache (the steady state), with and without the
//!   rate limit;
//! - the admin token;
//! - a well-formed unknown key (negative cache) and a malformed one;
//! - an app key with the cache off (`cache_ttl_ms = 0`): a SQLite lookup on
//!   every request.
//!
//! Run: `cargo bench -p xray-auth --bench authenticate`
//! Latest results are in `docs/benchmarks.md`.
//!
//! Each sample runs its iterations inside one `block_on`, so the figures are
//! the calls themselves, not the runtime's entry cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use xray_auth::Authenticator;
use xray_config::{AuthConfig, RateLimitConfig};
use xray_store::Store;

const ADMIN: &str = "bench-admin-token-0123456789abcdef";

fn config(cache_ttl_ms: u64, requests_per_sec: f64) -> AuthConfig {
    AuthConfig {
        required: true,
        admin_token: ADMIN.into(),
        cache_ttl_ms,
        rate_limit: RateLimitConfig {
            requests_per_sec,
            burst: u32::MAX,
        },
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let backend = rt.block_on(xray_store::testing::sqlite());
    let store: Arc<dyn Store> = backend.backend.clone();
    let (_, key) = rt
        .block_on(xray_auth::create_app(store.as_ref(), "Bench"))
        .unwrap();
    let unknown = format!("xr_{}", "u".repeat(32));
    // (name, config, the key presented, whether it is accepted)
    let cases: [(&str, AuthConfig, &str, bool); 6] = [
        ("app key, cached", config(5000, 0.0), &key, true),
        (
            "app key, cached, rate limit on",
            config(5000, 1e12),
            &key,
            true,
        ),
        ("admin token", config(5000, 0.0), ADMIN, true),
        ("unknown key, cached", config(5000, 0.0), &unknown, false),
        ("malformed key", config(5000, 0.0), "not-a-key", false),
        (
            "app key, no cache (sqlite lookup)",
            config(0, 0.0),
            &key,
            true,
        ),
    ];
    let mut g = c.benchmark_group("authenticate");
    for (name, cfg, presented, accepted) in cases {
        let auth = Authenticator::new(&cfg, store.clone());
        // warms the cache, and checks the case is what its name says
        let first = rt.block_on(auth.authenticate(Some(presented)));
        assert_eq!(first.is_ok(), accepted, "{name}: {first:?}");
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        let r = auth
                            .authenticate(Some(std::hint::black_box(presented)))
                            .await;
                        std::hint::black_box(&r);
                    }
                    t.elapsed()
                })
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
