//! `scripts/install` into a scratch root (DESTDIR), with the binary this test run built: the
//! files land where the unit and `inspectd train` look for them, a re-run keeps an edited
//! config, uninstall removes its files but keeps config and state, and --purge removes those.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Root(PathBuf);

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Root {
    fn path(&self, p: &str) -> PathBuf {
        self.0.join(p.trim_start_matches('/'))
    }
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Whether an ONNX Runtime is where the script copies it from (scripts/setup puts it there).
fn onnxruntime_available() -> bool {
    let found = repo(".local/lib/libonnxruntime.so").exists()
        || Path::new("/usr/local/lib/inspectd/libonnxruntime.so").exists();
    if !found {
        eprintln!("skipped: no ONNX Runtime installed (run scripts/setup)");
    }
    found
}

fn install(root: &Root, args: &[&str]) -> String {
    let out = Command::new(repo("scripts/install"))
        .args(args)
        .env("DESTDIR", &root.0)
        .env("INSPECTD_BINARY", env!("CARGO_BIN_EXE_inspectd"))
        .output()
        .expect("run scripts/install");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scripts/install {args:?} failed:\n{text}");
    text
}

fn same(a: &Path, b: &Path) -> bool {
    std::fs::read(a).ok().is_some_and(|x| std::fs::read(b).ok().is_some_and(|y| x == y))
}

#[test]
fn install_is_idempotent_and_uninstall_keeps_config_and_state_unless_purged() {
    if !onnxruntime_available() {
        return;
    }
    let root = Root(std::env::temp_dir().join(format!("inspectd-install-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&root.0);
    install(&root, &[]);

    assert!(same(&root.path("/usr/local/bin/inspectd"), Path::new(env!("CARGO_BIN_EXE_inspectd"))));
    assert!(same(&root.path("/etc/systemd/system/inspectd.service"), &repo("systemd/inspectd.service")));
    assert!(same(&root.path("/etc/inspectd/inspectd.toml"), &repo("config/inspectd.toml")));
    assert!(root.path("/usr/local/lib/inspectd/libonnxruntime.so").exists());
    assert!(root.path("/var/lib/inspectd/models").is_dir());
    let backbone = repo(".local/models/backbone.onnx");
    if backbone.exists() {
        assert!(same(&root.path("/usr/local/share/inspectd/backbone.onnx"), &backbone));
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| std::fs::metadata(root.path(p)).expect("installed").permissions().mode() & 0o777;
    assert_eq!(mode("/usr/local/bin/inspectd"), 0o755);
    assert_eq!(mode("/etc/inspectd/inspectd.toml"), 0o640, "the config may name secrets");
    assert_eq!(mode("/var/lib/inspectd"), 0o750);

    // A second run keeps the operator's config.
    std::fs::write(root.path("/etc/inspectd/inspectd.toml"), "# edited\n").expect("edit config");
    let again = install(&root, &[]);
    assert!(again.contains("kept (never overwritten)"), "{again}");
    assert_eq!(
        std::fs::read_to_string(root.path("/etc/inspectd/inspectd.toml")).expect("config"),
        "# edited\n"
    );

    install(&root, &["--uninstall"]);
    for gone in [
        "/usr/local/bin/inspectd",
        "/etc/systemd/system/inspectd.service",
        "/usr/local/lib/inspectd",
        "/usr/local/share/inspectd",
    ] {
        assert!(!root.path(gone).exists(), "{gone} left behind");
    }
    assert!(
        root.path("/etc/inspectd/inspectd.toml").exists() && root.path("/var/lib/inspectd/models").exists()
    );

    install(&root, &["--uninstall", "--purge"]);
    assert!(!root.path("/etc/inspectd").exists() && !root.path("/var/lib/inspectd").exists());
}

#[test]
fn purge_without_uninstall_is_refused() {
    let out = Command::new(repo("scripts/install")).arg("--purge").output().expect("run scripts/install");
    assert_eq!(out.status.code(), Some(2), "a usage error, and nothing touched");
}
