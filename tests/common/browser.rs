//! Headless Chromium (Debian's `chromium`, installed by scripts/setup) driven over the Chrome
//! DevTools Protocol: load a page, evaluate script in it as a person's clicks would, and take
//! screenshots. The browser runs with its own profile in the test's folder and is killed
//! when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

pub struct Browser {
    child: Child,
    page: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Browser {
    /// Starts Chromium with a `width`×`height` window and connects to its first page.
    pub fn start(profile: &Path, width: u32, height: u32) -> Browser {
        let mut child = Command::new("chromium")
            .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--mute-audio"])
            .args(["--disable-background-networking", "--disable-extensions", "--remote-debugging-port=0"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium (scripts/setup installs Debian's chromium)");
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let port = loop {
            let line = lines.next().expect("chromium said where DevTools listens").expect("stderr line");
            if let Some(url) = line.strip_prefix("DevTools listening on ws://") {
                let host_port = url.split('/').next().expect("host:port");
                break host_port.rsplit(':').next().expect("port").parse::<u16>().expect("port number");
            }
        };
        // Keep draining chromium's stderr so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let targets = get(port, "/json/list");
        let page = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let (page, _) = tungstenite::connect(page).expect("connect to the page's DevTools socket");
        let mut browser = Browser { child, page, next_id: 1 };
        browser.call("Page.enable", json!({}));
        browser.call("Runtime.enable", json!({}));
        browser
    }

    /// One DevTools command; returns its `result` (events in between are skipped).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({ "id": id, "method": method, "params": params }).to_string();
        self.page.send(Message::text(message)).expect("send a DevTools command");
        loop {
            let Message::Text(text) = self.page.read().expect("read the DevTools socket") else { continue };
            let reply: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method} failed: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// Loads `url` and waits until its document is parsed (an endless MJPEG image means the
    /// load event may never come).
    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
        let parsed = format!("location.href === {url:?} && document.readyState !== 'loading'");
        self.wait_for(&format!("{url} to load"), &parsed, Duration::from_secs(30));
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expression} threw: {r}");
        r["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy (one that throws counts as false); panics naming
    /// `what` after `timeout`.
    pub fn wait_for(&mut self, what: &str, expression: &str, timeout: Duration) -> Value {
        let until = Instant::now() + timeout;
        let guarded =
            format!("(() => {{ try {{ return ({expression}); }} catch (e) {{ return false; }} }})()");
        loop {
            let v = self.eval(&guarded);
            let truthy = !matches!(&v, Value::Null | Value::Bool(false))
                && v.as_f64() != Some(0.0)
                && v.as_str() != Some("");
            if truthy {
                return v;
            }
            assert!(
                Instant::now() < until,
                "timed out after {timeout:?} waiting for {what} ({expression} = {v})"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A PNG of the viewport, or of the element `selector` alone.
    pub fn screenshot(&mut self, selector: Option<&str>) -> Vec<u8> {
        let mut params = json!({ "format": "png" });
        if let Some(selector) = selector {
            let rect = self.eval(&format!(
                "(() => {{ const r = document.querySelector({selector:?}).getBoundingClientRect(); \
                 return {{x: r.x, y: r.y, width: r.width, height: r.height}}; }})()"
            ));
            params["clip"] = json!({ "x": rect["x"], "y": rect["y"], "width": rect["width"],
                                     "height": rect["height"], "scale": 1 });
        }
        let shot = self.call("Page.captureScreenshot", params);
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on the DevTools HTTP endpoint, as JSON. Chromium keeps the connection open
/// whatever the request says, so the body is read by its `Content-Length`.
fn get(port: u16, path: &str) -> Value {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("DevTools HTTP endpoint");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(&stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").expect("send");
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("DevTools reply head");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("Content-Length");
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("DevTools reply body");
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("DevTools {path}: {e}"))
}
