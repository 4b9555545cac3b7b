//! The README's run command, `agentwire demo`, and its `--serve` mode with
//! the Python gateway example (`examples/gateway.py`), run as a user would.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn the_demo_runs_paid_queries_and_the_chain_pays_exactly_the_receipts() {
    let out = Command::new(env!("CARGO_BIN_EXE_agentwire")).arg("demo").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for step in ["found brand.devnet on the DHT", "opened on chain", "receipt: request", "claims its highest voucher"] {
        assert!(text.contains(step), "missing {step:?} in:\n{text}");
    }
    assert!(text.contains("the chain paid the brand exactly what alice's receipts add up to"), "{text}");
}

/// Issue 14: `--json` was ignored by `demo`. Each line is one JSON step with
/// raw amounts (decimal strings of yoctoNEAR), and they add up.
#[test]
fn the_demo_under_json_prints_one_json_step_per_line_with_raw_amounts() {
    let out = Command::new(env!("CARGO_BIN_EXE_agentwire")).args(["--json", "demo"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let steps: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    fn named<'a>(steps: &'a [serde_json::Value], name: &'a str) -> impl Iterator<Item = &'a serde_json::Value> {
        steps.iter().filter(move |s| s["step"] == name)
    }
    let amount = |v: &serde_json::Value| v.as_str().unwrap().parse::<u128>().unwrap();
    for step in ["chain", "bootstrap", "brand", "found", "session", "channel_open", "claim", "balances_after", "done"] {
        assert_eq!(named(&steps, step).count(), 1, "{step} in:\n{text}");
    }
    let paid: u128 = named(&steps, "answer").map(|a| amount(&a["paid"])).sum();
    assert_eq!(named(&steps, "answer").count(), 5, "{text}");
    assert!(named(&steps, "chunk").count() > 3, "the story streams as chunk steps: {text}");
    assert!(named(&steps, "receipt").all(|r| r["verified"] == true) && named(&steps, "receipt").count() == 4, "{text}");
    let after = named(&steps, "balances_after").next().unwrap();
    assert_eq!(amount(&after["paid"]), paid);
    assert_eq!(amount(&after["claimed"]), paid, "the chain paid the brand exactly the answers: {after}");
}

#[test]
fn the_python_gateway_example_runs_against_the_demo() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("python3 is not installed: skipping the Python example (the gateway is tested in Rust too)");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut demo = Command::new(env!("CARGO_BIN_EXE_agentwire"))
        .args(["demo", "--serve", &addr])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("Still running") => break,
            Some(_) => {}
            None => panic!("the demo exited before serving"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/gateway.py");
    let out = Command::new("python3").arg(example).arg("brand.devnet").arg(format!("http://{addr}")).output().unwrap();
    let _ = demo.kill();
    let _ = demo.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("chat: Do you ship to Lisbon? | paid 0.01 NEAR (10000000000000000000000 yoctoNEAR)"),
        "{text}"
    );
    assert!(text.contains("story: a tale told one word at a time by a brand agent"), "{text}");
    assert!(text.contains("channel "), "{text}");
}

/// Issue 14: a demo stopped by a signal left `agentwire-demo-PID`, with keys
/// in it, behind. SIGINT in the middle and SIGTERM while serving both remove it.
#[test]
fn a_demo_stopped_by_a_signal_removes_its_directory() {
    for (signal, args) in [("-INT", vec!["demo"]), ("-TERM", vec!["demo", "--serve", "127.0.0.1:0"])] {
        let mut demo = Command::new(env!("CARGO_BIN_EXE_agentwire"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let dir = std::env::temp_dir().join(format!("agentwire-demo-{}", demo.id()));
        let wait_for = if args.len() == 1 { "3. Brand agent" } else { "Still running" };
        let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains(wait_for) => break,
                Some(_) => {}
                None => panic!("the demo exited before {wait_for:?}"),
            }
        }
        assert!(dir.join("brand.toml").exists(), "the demo works in {}", dir.display());
        let kill = Command::new("kill").args([signal, &demo.id().to_string()]).status().unwrap();
        assert!(kill.success());
        std::thread::spawn(move || for _ in lines {});
        let status = demo.wait().unwrap();
        assert!(!dir.exists(), "{signal}: {} is left behind (exit {status})", dir.display());
    }
}

/// `agentwire walkthrough` for people, and under `--json` one JSON step per line.
#[test]
fn the_walkthrough_runs_in_text_and_in_json() {
    let out = Command::new(env!("CARGO_BIN_EXE_agentwire")).arg("walkthrough").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("receipt verified"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_agentwire")).args(["--json", "walkthrough"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let steps: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(names, ["identities", "record", "handshake", "channel", "query", "query", "claimable"]);
    let price: u128 = steps[1]["price"].as_str().unwrap().parse().unwrap();
    assert_eq!(steps[5]["cumulative"].as_str().unwrap().parse::<u128>().unwrap(), 2 * price);
    assert_eq!(steps[6]["claimable"], steps[5]["cumulative"]);
}
