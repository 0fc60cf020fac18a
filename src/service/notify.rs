//! The systemd notification protocol (`sd_notify(3)`): one datagram per message, sent to the
//! Unix socket named by `NOTIFY_SOCKET`.
//!
//! Written here instead of taken from a crate because the protocol is one `sendto` and we want a
//! [`Notifier`] value that captures the socket once: tests point it at their own socket, and
//! clones share it between the notifier task (READY, STATUS, WATCHDOG) and the daemon's signal
//! handling (RELOADING, STOPPING). Outside systemd every call is a cheap no-op.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

/// Where notifications go, resolved once.
#[derive(Debug)]
struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
}

/// A handle on the service manager's notification socket; a no-op when there is none.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    /// `None` outside systemd (or under `Type=simple`): every message is silently skipped.
    target: Option<Arc<Target>>,
    /// The watchdog timeout systemd enforces for this process, if it enforces one.
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`. The variables are left in
    /// place: unsetting them in a multi-threaded process races with other readers of the
    /// environment, and inspectd starts no child that would misuse them.
    pub fn from_env() -> io::Result<Notifier> {
        let watchdog = parse_watchdog(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(path) if !path.is_empty() => Notifier::connect(&path, watchdog),
            _ => Ok(Notifier { target: None, watchdog }),
        }
    }

    /// A notifier for the socket at `path` (`@name` for an abstract socket).
    pub fn connect(path: &OsStr, watchdog: Option<Duration>) -> io::Result<Notifier> {
        let bytes = path.as_bytes();
        let addr = match bytes.strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None => SocketAddr::from_pathname(path)?,
        };
        let socket = UnixDatagram::unbound()?;
        // A full queue means systemd is not reading; waiting would stall a runtime thread.
        // Callers retry what matters (READY on the next check, WATCHDOG on the next ping).
        socket.set_nonblocking(true)?;
        Ok(Notifier { target: Some(Arc::new(Target { socket, addr })), watchdog })
    }

    /// Whether messages go anywhere (false outside systemd).
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The watchdog timeout, when systemd enforces one on this process (`WatchdogSec=`).
    /// Ping at half of it.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Start-up (or a reload) is complete.
    pub fn ready(&self) -> io::Result<()> {
        self.send("READY=1")
    }

    /// A reload began; send [`Notifier::ready`] when it is done. systemd ≥ 253 wants the
    /// monotonic time with it to tell this reload from an earlier one.
    pub fn reloading(&self) -> io::Result<()> {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()))
    }

    /// Shutdown began; systemd shows "deactivating" instead of a service that stopped pinging.
    pub fn stopping(&self) -> io::Result<()> {
        self.send("STOPPING=1")
    }

    /// One line for `systemctl status`. Newlines would start new assignments, so they become
    /// spaces.
    pub fn status(&self, line: &str) -> io::Result<()> {
        self.send(&format!("STATUS={}", line.replace(['\n', '\r'], " ")))
    }

    /// Tells the watchdog the service is healthy. Only call it when it is (see
    /// [`super::watchdog::watchdog_ok`]), never from a bare timer.
    pub fn watchdog(&self) -> io::Result<()> {
        self.send("WATCHDOG=1")
    }

    fn send(&self, message: &str) -> io::Result<()> {
        let Some(target) = &self.target else { return Ok(()) };
        let sent = target.socket.send_to_addr(message.as_bytes(), &target.addr)?;
        if sent != message.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "notification truncated"));
        }
        Ok(())
    }
}

/// The watchdog timeout from `WATCHDOG_USEC`, if `WATCHDOG_PID` (when set) names this process:
/// systemd sets both for the main process only, and a child that inherited them must not ping.
fn parse_watchdog(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    match pid.map(|p| p.trim().parse::<u32>()) {
        None => Some(Duration::from_micros(usec)),
        Some(Ok(p)) if p == own_pid => Some(Duration::from_micros(usec)),
        Some(_) => None,
    }
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares reload times on.
/// `std::time::Instant` reads the same clock but does not expose its value.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_MONOTONIC exists on every Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000).saturating_add(ts.tv_nsec as u64 / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_applies_only_to_the_process_it_names() {
        let own = 4242;
        assert_eq!(parse_watchdog(Some("30000000"), None, own), Some(Duration::from_secs(30)));
        assert_eq!(parse_watchdog(Some("30000000"), Some("4242"), own), Some(Duration::from_secs(30)));
        assert_eq!(parse_watchdog(Some("30000000"), Some("17"), own), None);
        assert_eq!(parse_watchdog(Some("0"), None, own), None);
        assert_eq!(parse_watchdog(Some("soon"), None, own), None);
        assert_eq!(parse_watchdog(None, Some("4242"), own), None);
    }

    #[test]
    fn monotonic_clock_advances() {
        let a = monotonic_usec();
        std::thread::sleep(Duration::from_millis(2));
        assert!(monotonic_usec() >= a + 1_000);
    }

    #[test]
    fn without_a_socket_every_message_is_a_no_op() {
        let n = Notifier::default();
        assert!(!n.is_enabled());
        assert!(n.ready().is_ok() && n.watchdog().is_ok() && n.status("x").is_ok());
    }
}
