//! Load generator for the scale of one brand endpoint (issue 15), not a
//! timed test: it prints figures for BENCHMARKS.md. Loopback only; every
//! phase is bounded in time.
//!
//! 1. **sessions**: many sessions held open against one brand: the brand's
//!    resident memory and live heap per session and handshakes per second,
//!    against a plain quinn server (the baseline);
//! 2. **paid**: paid queries at a fixed offered rate spread over many
//!    sessions (open loop), each session its own payer and channel on the
//!    devnet: latency percentiles and errors, against the same schedule
//!    on the same sessions asking a free service (the baseline);
//! 3. … the same while another client floods the brand with free requests:
//!    the paid latency with and without it (runs alternate).
//! 4. **dht**: many agents on one machine's DHT: lookup success and time.
//!
//! The brand is a process of its own (this bench re-executed in the `brand`
//! role, running what `agentwire serve` runs), so its memory and CPU time
//! are its own; so is the flooding client (`flood` role).
//!
//!   cargo bench -p agentwire-agent --bench scale [-- key=value ...]
//!
//! Keys (defaults): phases=sessions,paid,dht sessions=10000 per_ip=250
//! connect=128 hold=12 paid_sessions=1000 rate=5000 warmup=10 duration=10
//! rounds=3 flood_in_flight=256 dht=500 dht_lookups=4 dht_window=30 dht_settle=180 keep=0
//! (`keep=1` keeps the run's directory: the brand's and the flood's logs).
//! The last line is machine-readable: `SCALE key=value …`.
//!
//! Environment: `AGENTWIRE_SCALE_MAX_STREAMS=n` sets the most request
//! streams the brand allows per connection (default 256) and
//! `AGENTWIRE_SCALE_INITIAL_STREAMS=n` the allowance a connection starts
//! with (default 32; the plain quinn baseline keeps it, the brand raises it
//! as a peer uses it). quinn keeps an entry per allowed stream, so these
//! move memory per session. `AGENTWIRE_SCALE_WATCH_EVERY=s` sets how often
//! the brand reads its channels on chain (default 30 s; the devnet runs in
//! this process, so its view calls take this process's CPU).
//! `AGENTWIRE_SCALE_RESERVE_QUERIES=n` sets how many queries ahead each
//! payer reserves (default 64), that is how often its store is written;
//! `AGENTWIRE_SCALE_STAGGER=n` spreads the payers' warm-up over 1 to n
//! queries each (default 32, so their store writes are not in step; 0: all
//! in step).
//! `AGENTWIRE_SCALE_DHT_IDLE_SECS=s` and `AGENTWIRE_SCALE_DHT_KEEPALIVE_SECS=s`
//! set the DHT nodes' idle connection timeout and QUIC keep-alive (defaults:
//! the agent's, 30 s and 15 s).
//! `AGENTWIRE_SCALE_WRAP="cmd args"` with
//! `AGENTWIRE_SCALE_WRAP_ROLE=brand|flood|quinn` starts that child under
//! `cmd` (a profiler, say).

mod brand;
mod dht;
mod heap;
mod machine;
mod paid;
mod sessions;

use std::time::Duration;

/// The allocator the `agentwire` binary ships with (so the brand's memory is
/// what a brand's would be), counting live bytes.
#[global_allocator]
static GLOBAL: heap::Counting = heap::Counting;

/// Which role a process of this bench plays (unset: the load generator).
pub const ROLE_ENV: &str = "AGENTWIRE_SCALE_ROLE";

/// The run's parameters.
#[derive(Debug, Clone)]
struct Params {
    phases: Vec<String>,
    sessions: usize,
    per_ip: usize,
    connect: usize,
    hold: u64,
    paid_sessions: usize,
    rate: f64,
    warmup: u64,
    duration: u64,
    rounds: usize,
    flood_in_flight: usize,
    dht: usize,
    dht_lookups: usize,
    dht_window: u64,
    dht_settle: u64,
    keep: bool,
}

impl Params {
    fn parse() -> Params {
        let mut p = Params {
            phases: vec!["sessions".into(), "paid".into(), "dht".into()],
            sessions: 10_000,
            per_ip: 250,
            connect: 128,
            hold: 12,
            paid_sessions: 1000,
            rate: 5000.0,
            warmup: 10,
            duration: 10,
            rounds: 3,
            flood_in_flight: 256,
            dht: 500,
            dht_lookups: 4,
            dht_window: 30,
            dht_settle: 180,
            keep: false,
        };
        for arg in std::env::args().skip(1) {
            let Some((k, v)) = arg.split_once('=') else { continue };
            let n = || v.parse::<usize>().unwrap_or_else(|_| panic!("{k}={v}: not a number"));
            match k {
                "phases" => p.phases = v.split(',').map(str::to_string).collect(),
                "sessions" => p.sessions = n(),
                "per_ip" => p.per_ip = n().max(1),
                "connect" => p.connect = n().max(1),
                "hold" => p.hold = n() as u64,
                "paid_sessions" => p.paid_sessions = n().max(1),
                "rate" => p.rate = n() as f64,
                "warmup" => p.warmup = n() as u64,
                "duration" => p.duration = n().max(1) as u64,
                "rounds" => p.rounds = n().max(1),
                "flood_in_flight" => p.flood_in_flight = n().max(1),
                "dht" => p.dht = n(),
                "dht_lookups" => p.dht_lookups = n().max(1),
                "dht_window" => p.dht_window = n().max(1) as u64,
                "dht_settle" => p.dht_settle = n() as u64,
                "keep" => p.keep = n() != 0,
                _ => panic!("unknown parameter {k}"),
            }
        }
        p
    }

    fn has(&self, phase: &str) -> bool {
        self.phases.iter().any(|p| p == phase)
    }

    fn command(&self) -> String {
        format!(
            "cargo bench -p agentwire-agent --bench scale -- phases={} sessions={} per_ip={} connect={} hold={} paid_sessions={} rate={} warmup={} duration={} rounds={} flood_in_flight={} dht={} dht_lookups={} dht_window={} dht_settle={} keep={}",
            self.phases.join(","),
            self.sessions,
            self.per_ip,
            self.connect,
            self.hold,
            self.paid_sessions,
            self.rate,
            self.warmup,
            self.duration,
            self.rounds,
            self.flood_in_flight,
            self.dht,
            self.dht_lookups,
            self.dht_window,
            self.dht_settle,
            u8::from(self.keep)
        )
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Everything the run measured, for the summary and the last line.
#[derive(Default)]
struct Results {
    held: Option<sessions::Held>,
    baseline: Option<sessions::Held>,
    warm_up: Option<paid::Run>,
    unpaid: Vec<paid::Run>,
    quiet: Vec<paid::Run>,
    flooded: Vec<paid::Run>,
    dht: Option<dht::Figures>,
}

fn main() {
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("brand") => return with_logs(brand::run_child),
        Ok("flood") => return with_logs(paid::run_flood_child),
        Ok("quinn") => return with_logs(brand::run_quinn_child),
        _ => {}
    }
    let p = Params::parse();
    println!("# Scale of one brand endpoint\n");
    println!("- command: `{}`", p.command());
    println!("- date: {}", machine::utc_now());
    println!("- machine: {}", machine::describe());
    println!("- limits: {}", machine::limits());
    println!("- load average at start (1, 5, 15 min): {}", machine::loadavg());
    println!();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = std::env::temp_dir().join(format!("agentwire-bench-scale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let params = p.clone();
    let keep = p.keep;
    let results = rt
        .block_on(rt.spawn(async move { run(params, dir.clone()).await.finish(&dir, keep) }))
        .expect("load generator");
    summary(&p, &results);
}

/// Children log warnings and errors to their stderr (a log file).
fn with_logs(role: fn()) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,libp2p_kad=error"));
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(std::io::stderr).init();
    role();
}

impl Results {
    fn finish(self, dir: &std::path::Path, keep: bool) -> Results {
        if keep {
            println!("Run directory kept (logs): {}\n", dir.display());
        } else {
            let _ = std::fs::remove_dir_all(dir);
        }
        self
    }
}

async fn run(p: Params, dir: std::path::PathBuf) -> Results {
    let mut results = Results::default();
    if p.has("sessions") || p.has("paid") {
        let payers = if p.has("paid") { p.paid_sessions } else { 0 };
        let chain = brand::chain(payers).await;
        let most = p.sessions.max(p.paid_sessions);
        let mut brand = brand::start(&chain, &dir.join("brand"), most, p.per_ip);
        println!(
            "Brand process {} on {} (limits: {} connections, {} per IP; otherwise the defaults)\n",
            brand.process.pid, brand.addr, brand.limits.max_connections, brand.limits.max_connections_per_ip
        );
        if p.has("sessions") {
            let hold = Duration::from_secs(p.hold);
            let plan = |first_ip| sessions::Plan {
                sessions: p.sessions,
                per_ip: p.per_ip,
                concurrency: p.connect,
                hold,
                first_ip,
            };
            let before = tokio::task::block_in_place(|| brand.counters());
            let kind = sessions::Kind::AgentWire(Box::new(brand.target.clone()));
            let held = sessions::run(kind, &mut brand.process, brand.addr.port(), plan(0)).await;
            let after = tokio::task::block_in_place(|| brand.counters());
            // The baseline, in the same run: the same sessions against plain quinn.
            let (mut quinn, addr) = brand::start_quinn(&dir.join("quinn"));
            let kind = sessions::Kind::Quinn(addr);
            let baseline = sessions::run(kind, &mut quinn, addr.port(), plan(100)).await;
            drop(quinn);
            print_held(&held, &baseline, before, after);
            results.held = Some(held);
            results.baseline = Some(baseline);
        }
        if p.has("paid") {
            paid_phases(&p, &chain, &mut brand, &dir, &mut results).await;
        }
    }
    if p.has("dht") {
        let f =
            dht::run(p.dht, p.dht_lookups, Duration::from_secs(p.dht_window), Duration::from_secs(p.dht_settle)).await;
        print_dht(&f);
        results.dht = Some(f);
    }
    results
}

fn print_held(h: &sessions::Held, q: &sessions::Held, before: brand::Counters, after: brand::Counters) {
    println!("## 1. Sessions held open\n");
    println!(
        "{} sessions wanted, {} per client address ({} addresses, one quinn endpoint each), {} handshakes at once; each session: QUIC + TLS 1.3 + Noise IK and one free 200-byte request (AgentWire), or QUIC + TLS 1.3 and one 200-byte echo on a stream (plain quinn, the same TLS and transport settings, a server process of its own); held {} s.\n",
        h.wanted, h.per_ip, h.wanted.div_ceil(h.per_ip), h.concurrency, h.hold.as_secs()
    );
    let ratio = |a: f64, b: f64| if b > 0.0 { format!("{:.2}×", a / b) } else { "—".into() };
    println!("| figure | AgentWire brand | plain quinn (baseline) | ratio |\n|---|---|---|---|");
    println!(
        "| sessions held (still open after the hold) | {} ({}) | {} ({}) | |",
        h.held, h.alive_after_hold, q.held, q.alive_after_hold
    );
    for (what, x) in [("AgentWire", h), ("quinn", q)] {
        for (e, n) in &x.failures {
            println!("| {what} failed: {e} | {n} | | |");
        }
    }
    let rss = |x: &sessions::Held| {
        format!("{} → {} → {} → {} → {}", x.rss_before, x.rss_half, x.rss_full, x.rss_held, x.rss_closed)
    };
    println!("| server RSS idle → half → all → after hold → all closed, KiB | {} | {} | |", rss(h), rss(q));
    println!(
        "| server anonymous RSS idle → all, KiB | {} → {} | {} → {} | |",
        h.anon_before, h.anon_full, q.anon_before, q.anon_full
    );
    let heap = |x: &sessions::Held| {
        format!("{} → {} → {} → {} → {}", x.heap_before, x.heap_half, x.heap_full, x.heap_held, x.heap_closed)
    };
    println!(
        "| server live heap (allocator count) idle → half → all → after hold → all closed, KiB | {} | {} | |",
        heap(h),
        heap(q)
    );
    println!(
        "| **server live heap per session** (heap growth / sessions) | **{:.1} KiB** | {:.1} KiB | {} |",
        h.heap_kib_per_session(),
        q.heap_kib_per_session(),
        ratio(h.heap_kib_per_session(), q.heap_kib_per_session())
    );
    println!(
        "| **server memory per session** (RSS growth / sessions) | **{:.1} KiB** | {:.1} KiB | {} |",
        h.kib_per_session(),
        q.kib_per_session(),
        ratio(h.kib_per_session(), q.kib_per_session())
    );
    println!(
        "| server memory per session, second half only | {:.1} KiB | {:.1} KiB | {} |",
        h.kib_per_session_marginal(),
        q.kib_per_session_marginal(),
        ratio(h.kib_per_session_marginal(), q.kib_per_session_marginal())
    );
    println!(
        "| **sessions set up per second** (both sides on this machine) | **{:.0}/s** | {:.0}/s | {} |",
        h.handshakes_per_sec(),
        q.handshakes_per_sec(),
        ratio(h.handshakes_per_sec(), q.handshakes_per_sec())
    );
    let cpu = |x: &sessions::Held| x.brand_cpu.as_secs_f64() * 1e6 / x.held.max(1) as f64;
    println!(
        "| server CPU per session set up | {:.0} µs ({:.0}/s per core) | {:.0} µs ({:.0}/s per core) | {} |",
        cpu(h),
        1e6 / cpu(h).max(1e-9),
        cpu(q),
        1e6 / cpu(q).max(1e-9),
        ratio(cpu(h), cpu(q))
    );
    println!("| server threads | {} | {} | |", h.brand_threads, q.brand_threads);
    let drops =
        |x: &sessions::Held| format!("{}, {}, {}; {}", x.drops.rcvbuf, x.drops.sndbuf, x.drops.mem, x.brand_drops);
    println!(
        "| UDP datagrams dropped (receive buffer, send buffer, memory; of them at the server's socket) | {} | {} | |",
        drops(h),
        drops(q)
    );
    println!(
        "| brand counters: handshakes, failed, refused | {}, {}, {} | | |",
        after.handshakes - before.handshakes,
        after.handshake_failures - before.handshake_failures,
        after.refused - before.refused
    );
    println!(
        "| load average before → after | {:.2} → {:.2} | {:.2} → {:.2} | |\n",
        h.load_before, h.load_after, q.load_before, q.load_after
    );
}

async fn paid_phases(
    p: &Params,
    chain: &brand::Chain,
    brand: &mut brand::BrandProcess,
    dir: &std::path::Path,
    results: &mut Results,
) {
    let per_session = p.rate / p.paid_sessions as f64 * p.duration as f64 * (2 * p.rounds) as f64;
    let queries_each = (per_session * 3.0) as u128 + 1000;
    let (sessions, setup) =
        paid::setup(chain, brand, &dir.join("payers"), p.paid_sessions, p.per_ip, queries_each).await;
    println!("## 2–3. Paid queries at a fixed offered rate, without and with a flood of free requests\n");
    println!(
        "{} sessions, each its own payer (its own channel on the devnet, durable payer store, default policy: 8 queries paid ahead, receipts in batches checked alongside); {} paid 200-byte queries/s offered open loop for {} s per run; a warm-up run of {} s at the same rate (shown, not pooled), then {} rounds of (unpaid: the same schedule asking the free service, the baseline; paid quiet; paid flooded). The flood: one other client process, one session, {} free requests in flight, each sent again when answered or refused. Set-up: channels opened in {:.1} s, sessions in {:.1} s, a warm-up query on each in {:.1} s.\n",
        setup.sessions, p.rate, p.duration, p.warmup, p.rounds, p.flood_in_flight, setup.opening.as_secs_f64(), setup.connecting.as_secs_f64(), setup.warm_up.as_secs_f64()
    );
    println!("| run | answered / offered | errors | p50 | p99 | p99.9 | max | p99 from due | brand CPU | generator CPU | UDP drops | flood: answered/s, refused/s | load before → after |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let duration = Duration::from_secs(p.duration);
    // The first run after set-up pays one-time costs (each payer's first
    // reservation ahead, the brand's first pay-ahead credit per channel):
    // shown, but left out of the pooled figures.
    if p.warmup > 0 {
        let w =
            paid::run(&sessions, &brand.record, paid::PAID, brand.process.pid, p.rate, Duration::from_secs(p.warmup))
                .await;
        print_run("warm-up", &w);
        results.warm_up = Some(w);
    }
    for round in 0..p.rounds {
        // The baseline, in the same round: the same schedule on the same
        // sessions, asking the free service (no voucher, no receipt).
        let u = paid::run(&sessions, &brand.record, paid::FREE, brand.process.pid, p.rate, duration).await;
        print_run(&format!("unpaid {}", round + 1), &u);
        results.unpaid.push(u);
        for flooded in [false, true] {
            let flood = flooded.then(|| {
                let proc = machine::Process::spawn(
                    "flood",
                    &paid::flood_env(&brand.target, p.flood_in_flight),
                    &dir.join(format!("flood-{round}.log")),
                );
                tokio::task::block_in_place(|| proc.expect("STARTED", Duration::from_secs(30)))
                    .expect("flood client started");
                proc
            });
            let mut r = paid::run(&sessions, &brand.record, paid::PAID, brand.process.pid, p.rate, duration).await;
            if let Some(mut proc) = flood {
                proc.finish();
                let line =
                    tokio::task::block_in_place(|| proc.expect("FLOOD", Duration::from_secs(30))).unwrap_or_default();
                r.flood = Some(paid::Flood::parse(&line));
            }
            print_run(&format!("{} {}", if flooded { "flooded" } else { "quiet" }, round + 1), &r);
            if flooded {
                results.flooded.push(r)
            } else {
                results.quiet.push(r)
            }
        }
    }
    let counters = tokio::task::block_in_place(|| brand.counters());
    println!("\nBrand counters after the runs: requests {}, errors {}, payment refusals {}, disconnected {}, refused connections {}.\n", counters.requests, counters.errors, counters.payment_refusals, counters.disconnected, counters.refused);
    let warm_up: Vec<paid::Run> = results.warm_up.iter().cloned().collect();
    for (kind, runs) in
        [("warm-up", &warm_up), ("unpaid", &results.unpaid), ("quiet", &results.quiet), ("flooded", &results.flooded)]
    {
        for r in runs.iter() {
            for (e, n) in &r.errors {
                println!("- {kind}: {n} × {e}");
            }
        }
    }
}

fn print_run(name: &str, r: &paid::Run) {
    let flood = r.flood.map_or("—".to_string(), |f| {
        let s = f.elapsed.as_secs_f64().max(1e-9);
        format!("{:.0}/s, {:.0}/s ({} other errors)", f.answered as f64 / s, f.rate_limited as f64 / s, f.other_errors)
    });
    println!(
        "| {name} | {} / {} | {} (bad receipts {}, missing {}) | {} | {} | {} | {} | {} | {:.2} cores | {:.2} cores | {} | {flood} | {:.2} → {:.2} |",
        r.answered,
        r.offered,
        r.error_count(),
        r.bad_receipts,
        r.receipts_missing,
        ms(r.p50),
        ms(r.p99),
        ms(r.p999),
        ms(r.max),
        ms(r.due_p99),
        r.brand_cores,
        r.generator_cores,
        r.drops.total(),
        r.load_before,
        r.load_after
    );
}

fn print_dht(f: &dht::Figures) {
    println!("## 4. Agents on one machine's DHT\n");
    println!(
        "{} agents in this process: 4 bootstrap nodes, {} brands (server mode; each publishes its record and provides its account and service), {} users (client mode); all started in {:.1} s ({} failed to start). Each user looks up distinct brands by account, and one service, at random moments within {} s; one attempt each, no retry.\n",
        f.agents, f.brands, f.users, f.starting.as_secs_f64(), f.start_failures, f.window.as_secs()
    );
    println!("| lookup | done | succeeded | success rate | p50 | p99 | max |\n|---|---|---|---|---|---|---|");
    for (kind, l) in [("by account", &f.by_account), ("by service", &f.by_service)] {
        println!(
            "| {kind} | {} | {} | {:.2} % | {} | {} | {} |",
            l.done,
            l.succeeded,
            l.success_rate() * 100.0,
            ms(l.p50),
            ms(l.p99),
            ms(l.max)
        );
    }
    for (kind, l) in [("by account", &f.by_account), ("by service", &f.by_service)] {
        for (e, n) in &l.failures {
            println!("- {kind} failed: {n} × {e}");
        }
    }
    println!("\nLoad generator RSS with all nodes up: {} MiB ({:.1} MiB per agent); its CPU use over the 5 s before the lookups ({:.0} s after the last start): {:.2} cores, while the lookups ran: {:.2} cores; load average before → after: {:.2} → {:.2}\n", f.rss_kib / 1024, f.rss_kib as f64 / 1024.0 / f.agents.max(1) as f64, f.settling.as_secs_f64(), f.idle_cores, f.lookup_cores, f.load_before, f.load_after);
}

/// Percentiles over every run of a kind (all answered requests pooled).
fn pooled(runs: &[paid::Run]) -> (Duration, Duration, usize, usize) {
    let mut all: Vec<u32> = runs.iter().flat_map(|r| r.samples.iter().copied()).collect();
    all.sort_unstable();
    let at = |p: f64| {
        all.get(((all.len() as f64 - 1.0) * p).round() as usize)
            .map_or(Duration::ZERO, |us| Duration::from_micros(u64::from(*us)))
    };
    let errors = runs.iter().map(paid::Run::error_count).sum();
    let offered = runs.iter().map(|r| r.offered).sum();
    (at(0.5), at(0.99), errors, offered)
}

fn summary(p: &Params, r: &Results) {
    println!("## Against the targets (issue 15)\n");
    println!("| target | measured | met |\n|---|---|---|");
    let mut line = String::from("SCALE");
    let yes = |b: bool| if b { "yes" } else { "**no**" };
    if let Some(h) = &r.held {
        let kib = h.kib_per_session();
        let heap = h.heap_kib_per_session();
        println!("| {} sessions held, ≤ 48 KiB each | {} held, {:.1} KiB RSS each ({:.1} KiB live heap); {:.0} handshakes/s | {} |", p.sessions, h.held, kib, heap, h.handshakes_per_sec(), yes(h.held == p.sessions && kib <= 48.0));
        line += &format!(
            " sessions_held={} kib_per_session={:.1} heap_kib_per_session={heap:.1} handshakes_per_s={:.0}",
            h.held,
            kib,
            h.handshakes_per_sec()
        );
    }
    if let Some(w) = &r.warm_up {
        println!(
            "| (the warm-up run, first after set-up; not pooled) | p50 {}, p99 {}; {} errors of {} | |",
            ms(w.p50),
            ms(w.p99),
            w.error_count(),
            w.offered
        );
        line += &format!(" warmup_p99_ms={:.3} warmup_errors={}", w.p99.as_secs_f64() * 1e3, w.error_count());
    }
    if !r.quiet.is_empty() {
        let (q50, q99, qerr, qoff) = pooled(&r.quiet);
        println!(
            "| paid p99 ≤ 10 ms at {} queries/s over {} sessions | p50 {}, p99 {}; {} errors of {} | {} |",
            p.rate,
            p.paid_sessions,
            ms(q50),
            ms(q99),
            qerr,
            qoff,
            yes(q99 <= Duration::from_millis(10) && qerr == 0)
        );
        line += &format!(
            " paid_p50_ms={:.3} paid_p99_ms={:.3} paid_errors={qerr}",
            q50.as_secs_f64() * 1e3,
            q99.as_secs_f64() * 1e3
        );
        if !r.unpaid.is_empty() {
            let (u50, u99, uerr, _) = pooled(&r.unpaid);
            println!("| (baseline: unpaid at the same rate) | p50 {}, p99 {}; {} errors; paid / unpaid p99 {:.2}×, p50 {:.2}× | |", ms(u50), ms(u99), uerr, q99.as_secs_f64() / u99.as_secs_f64().max(1e-9), q50.as_secs_f64() / u50.as_secs_f64().max(1e-9));
            line += &format!(
                " unpaid_p99_ms={:.3} paid_over_unpaid_p99={:.2}",
                u99.as_secs_f64() * 1e3,
                q99.as_secs_f64() / u99.as_secs_f64().max(1e-9)
            );
        }
        if !r.flooded.is_empty() {
            let (f50, f99, ferr, _) = pooled(&r.flooded);
            let ratio = f99.as_secs_f64() / q99.as_secs_f64().max(1e-9);
            let rounds: Vec<String> = r
                .quiet
                .iter()
                .zip(&r.flooded)
                .map(|(q, f)| format!("{:.2}×", f.p99.as_secs_f64() / q.p99.as_secs_f64().max(1e-9)))
                .collect();
            println!("| a flood raises paid p99 at most 2× | p99 {} → {} ({:.2}×; round by round {}); p50 {} → {}; {} errors | {} |", ms(q99), ms(f99), ratio, rounds.join(", "), ms(q50), ms(f50), ferr, yes(ratio <= 2.0 && qerr == 0 && q99 <= Duration::from_millis(10)));
            line += &format!(
                " flooded_p99_ms={:.3} flood_over_quiet_p99={ratio:.2} flooded_errors={ferr}",
                f99.as_secs_f64() * 1e3
            );
        }
    }
    if let Some(d) = &r.dht {
        let rate = d.by_account.success_rate();
        println!("| DHT lookups succeed 100 % across {} agents | by account {:.2} % (p50 {}, p99 {}), by service {:.2} % | {} |", d.agents, rate * 100.0, ms(d.by_account.p50), ms(d.by_account.p99), d.by_service.success_rate() * 100.0, yes(d.by_account.succeeded == d.by_account.done && d.by_service.succeeded == d.by_service.done));
        line += &format!(
            " dht_agents={} dht_success={:.4} dht_p50_ms={:.1} dht_p99_ms={:.1}",
            d.agents,
            rate,
            d.by_account.p50.as_secs_f64() * 1e3,
            d.by_account.p99.as_secs_f64() * 1e3
        );
    }
    if !r.flooded.is_empty() {
        println!("\nThe flood target counts as met only where the quiet paid runs met theirs: a ratio over collapsed runs says nothing.");
    }
    println!("\nLoad average at the end (1, 5, 15 min): {}\n", machine::loadavg());
    println!("{line}");
}
