//! A stage of the real daemon dies (the decision thread panics on its first frame, through the
//! `INSPECTD_FAILPOINT` test hook): that must be a health failure everyone sees. `/readyz`
//! fails naming the stage, the watchdog stops pinging, the node status on MQTT says `error`
//! with the stage, and the process exits non-zero so that systemd restarts it. Before
//! supervision, scoring kept beating, the watchdog kept pinging and no alarm could be raised.

#[path = "common/broker.rs"]
mod broker;
#[path = "common/daemon.rs"]
mod daemon;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker::{assert_valid, Broker, Subscriber, TestDir};
use daemon::{config_head, strip_ansi, test_camera};

const SECOND: Duration = Duration::from_secs(1);

/// `GET path` on 127.0.0.1:`port`: (status code, body), or `None` when nothing listens.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(SECOND)).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, text.split("\r\n\r\n").nth(1).unwrap_or("").to_string()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_stage_fails_health_stops_the_watchdog_says_error_and_exits_non_zero() {
    let dir = TestDir::new("daemon-supervision");
    let broker = Broker::start(&dir);
    let node = "supervised";
    let http = free_port();
    let head = config_head(node, &dir.0, broker.port)
        .replace("bind = \"\"", &format!("bind = \"127.0.0.1:{http}\""));
    let config = format!("{head}{}", test_camera("cam", 10));
    let file = dir.path("supervised.toml");
    std::fs::write(&file, config).unwrap();
    // systemd's side of sd_notify: a datagram socket named by NOTIFY_SOCKET.
    let socket_path = dir.path("notify.sock");
    let manager = UnixDatagram::bind(&socket_path).unwrap();
    manager.set_read_timeout(Some(SECOND / 10)).unwrap();
    let mut sub = Subscriber::connect(broker.port, &format!("inspectd/{node}/status")).await;

    let log = dir.path("supervised.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_inspectd"))
        .args(["run", "--config"])
        .arg(&file)
        .env("INSPECTD_LOG", "info")
        .env("INSPECTD_FAILPOINT", "decide")
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // The first frame reaches the decision thread within seconds of the start. Watch the
    // health endpoint meanwhile: the failed state lasts only while the daemon drains.
    let seen = Arc::new(Mutex::new(Vec::<(u16, String)>::new()));
    let poller = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let until = Instant::now() + 60 * SECOND;
            let mut answered = false;
            while Instant::now() < until {
                match get(http, "/readyz") {
                    Some(r) => {
                        answered = true;
                        seen.lock().unwrap().push(r);
                    }
                    None if answered => return,
                    None => {}
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let error =
        sub.expect("the node status 'error'", 60 * SECOND, |m| m.json()["state"] == "error").await.json();
    assert_valid("node_status", &error);
    assert_eq!(error["failure"]["stage"], "decide", "{error}");
    assert!(error["failure"]["reason"].as_str().unwrap().contains("panicked"), "{error}");

    let until = Instant::now() + 30 * SECOND;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < until, "the daemon did not exit after the failure");
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = strip_ansi(&std::fs::read_to_string(&log).unwrap());
    assert!(!status.success() && status.code() != Some(78), "a restartable failure, got {status:?}:\n{log}");
    assert!(log.contains("stage decide failed"), "{log}");
    poller.join().unwrap();

    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|(code, body)| *code == 503 && body.contains("stage decide failed")),
        "/readyz must fail naming the stage; it answered {seen:?}"
    );
    // The retained status stays `error` after the exit, for whoever looks next.
    let mut late = Subscriber::connect(broker.port, &format!("inspectd/{node}/status")).await;
    let retained = late.expect("the retained node status", 2 * SECOND, |m| m.retain).await.json();
    assert_eq!(retained["state"], "error", "{retained}");

    // The watchdog: pings before the failure, none after systemd was told about it.
    let mut datagrams = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = manager.recv(&mut buf) {
        datagrams.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let failed_at = datagrams
        .iter()
        .position(|d| d.starts_with("STATUS=Failed: stage decide failed"))
        .unwrap_or_else(|| panic!("systemd is told which stage failed: {datagrams:?}"));
    assert!(
        !datagrams[failed_at..].iter().any(|d| d == "WATCHDOG=1"),
        "no watchdog ping after the failure: {datagrams:?}"
    );
}
