//! Running a test inside a loopback-only network namespace, with aravis' fake GigE Vision
//! camera (design.md §8). Outside such a namespace aravis discovers the fake camera through
//! the machine's other interfaces and sends GigE Vision traffic to a non-loopback address, so
//! a test re-executes itself inside a fresh namespace (marked by [`MARKER`]) and deletes the
//! namespace afterwards, also when the inner run fails.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};

/// Set in the re-executed test, which then runs its scenario.
pub const MARKER: &str = "INSPECTD_TEST_IN_NETNS";
pub const FAKE_CAMERA: &str = "arv-fake-gv-camera-0.8";

/// Whether this process is the re-executed test inside the namespace.
pub fn inside() -> bool {
    std::env::var_os(MARKER).is_some()
}

/// Runs the test `test` of this test binary again inside a fresh loopback-only namespace and
/// asserts it passed. Returns false, with the reason printed, when namespaces cannot be made
/// here (not root, no `ip`): the caller skips.
pub fn rerun_inside(test: &str) -> bool {
    let Some(namespace) = Namespace::create(test) else { return false };
    let exe = std::env::current_exe().expect("test binary path");
    let status = Command::new("ip")
        .args(["netns", "exec", &namespace.name, "env", &format!("{MARKER}=1")])
        .arg(exe)
        .args(["--exact", test, "--test-threads=1", "--nocapture"])
        .status()
        .expect("run the test inside the namespace");
    assert!(status.success(), "{test} failed inside {} (output above)", namespace.name);
    true
}

/// Refuses to go on where the fake camera could reach a real network.
pub fn assert_loopback_only() {
    let links = Command::new("ip").args(["-o", "link", "show"]).output().expect("ip link");
    let links = String::from_utf8_lossy(&links.stdout);
    let names: Vec<&str> = links.lines().filter_map(|l| l.split(':').nth(1)).map(str::trim).collect();
    assert_eq!(names, ["lo"], "refusing to run the fake camera outside a loopback-only namespace");
}

/// The fake camera process (`Aravis-Fake-GV01`, 512×512 Bayer BGGR), killed when dropped.
pub struct FakeCamera(Option<Child>);

impl FakeCamera {
    pub fn start() -> FakeCamera {
        assert_loopback_only();
        let child = Command::new(FAKE_CAMERA)
            .args(["-i", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{FAKE_CAMERA} (Debian package aravis-tools) did not start: {e}"));
        FakeCamera(Some(child))
    }

    /// Kills the camera, as a power cut or a pulled cable would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for FakeCamera {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback-only network namespace, deleted when dropped.
struct Namespace {
    name: String,
}

impl Namespace {
    /// `None`, with the reason printed, where namespaces cannot be made: not root, or no `ip`.
    fn create(test: &str) -> Option<Namespace> {
        if !is_root() {
            eprintln!("SKIPPED {test}: creating a network namespace needs root");
            return None;
        }
        // One namespace per test: tests of one binary run in parallel, each with its own camera.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("inspectd-dtest-{}-{n}", std::process::id());
        match Command::new("ip").args(["netns", "add", &name]).status() {
            Ok(status) if status.success() => {}
            Ok(status) => panic!("`ip netns add {name}` failed ({status}) although running as root"),
            Err(e) => {
                eprintln!("SKIPPED {test}: `ip` (iproute2) is not available: {e}");
                return None;
            }
        }
        let namespace = Namespace { name };
        let up = Command::new("ip")
            .args(["netns", "exec", &namespace.name, "ip", "link", "set", "lo", "up"])
            .status();
        assert!(up.is_ok_and(|s| s.success()), "bringing up loopback in {} failed", namespace.name);
        Some(namespace)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Anything the inner run left behind (a daemon, broker or camera after a panic) was
        // started by us, inside this namespace.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).status();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uid = status.lines().find(|l| l.starts_with("Uid:"))?;
            uid.split_whitespace().nth(1).map(|effective| effective == "0")
        })
        .unwrap_or(false)
}
