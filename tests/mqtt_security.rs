//! TLS (CA + client certificate) and username/password against a real mosquitto, with
//! certificates made by the openssl CLI for each run.

#[path = "common/broker.rs"]
mod broker;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use broker::{configs, Broker, TestDir};
use inspectd::config::TlsConfig;
use inspectd::publish::MqttPublisher;

const SERVER: &str = "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n";
const CLIENT: &str = "extendedKeyUsage=clientAuth\n";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A certificate signed by `ca` for `name` (P-256 keys: fast to make), with X.509 v3
/// `extensions` (rustls refuses v1 certificates). Returns the paths of certificate and key.
fn issue(dir: &Path, ca: &str, name: &str, extensions: &str) -> (PathBuf, PathBuf) {
    let (key, csr, cert) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    let ext = format!("{name}.ext");
    std::fs::write(dir.join(&ext), extensions).expect("ext file");
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            &cert,
            "-extfile",
            &ext,
        ],
    );
    (dir.join(cert), dir.join(key))
}

fn make_ca(dir: &Path, name: &str) -> PathBuf {
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "1",
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    dir.join(pem)
}

async fn connects_within(publisher: &MqttPublisher, timeout: Duration) -> bool {
    let mut connected = publisher.connected();
    let up = tokio::time::timeout(timeout, connected.wait_for(|up| *up)).await.is_ok();
    up
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_connects_only_with_the_right_ca() {
    let dir = TestDir::new("tls");
    let ca = make_ca(&dir.0, "ca");
    let (server_cert, server_key) = issue(&dir.0, "ca", "server", SERVER);
    let (client_cert, client_key) = issue(&dir.0, "ca", "client", CLIENT);
    let listener = format!(
        "listener {{port}} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
         require_certificate true\nallow_anonymous true\npersistence false\n",
        ca.display(),
        server_cert.display(),
        server_key.display()
    );
    let broker = Broker::start_with(&dir, &listener);
    let (mut mqtt, node) = configs(broker.port, "tls", &dir);
    mqtt.tls =
        Some(TlsConfig { ca: ca.clone(), cert: Some(client_cert.clone()), key: Some(client_key.clone()) });
    let (publisher, _acks) = MqttPublisher::start(&mqtt, &node, &dir.path("outbox")).expect("starts");
    assert!(connects_within(&publisher, Duration::from_secs(5)).await, "TLS connection with the right CA");
    publisher.shutdown(Duration::from_secs(2)).await;

    // A broker certificate from another CA is refused, and counted as a connection error.
    let other_ca = make_ca(&dir.0, "other-ca");
    mqtt.tls = Some(TlsConfig { ca: other_ca, cert: Some(client_cert), key: Some(client_key) });
    let (publisher, _acks) = MqttPublisher::start(&mqtt, &node, &dir.path("outbox")).expect("starts");
    assert!(!connects_within(&publisher, Duration::from_millis(800)).await, "untrusted broker certificate");
    assert!(publisher.stats().connection_errors >= 1);
    publisher.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_key_that_does_not_match_its_certificate_fails_at_start_naming_the_file() {
    let dir = TestDir::new("tls-mismatch");
    let ca = make_ca(&dir.0, "ca");
    let (client_cert, _) = issue(&dir.0, "ca", "client", CLIENT);
    let (_, other_key) = issue(&dir.0, "ca", "other", CLIENT);
    let (mut mqtt, node) = configs(1, "tls-mismatch", &dir);
    mqtt.tls = Some(TlsConfig { ca, cert: Some(client_cert.clone()), key: Some(other_key) });
    let err = MqttPublisher::start(&mqtt, &node, &dir.path("outbox")).err().expect("mismatched key");
    assert!(err.to_string().contains(&format!("mqtt.tls.cert {}", client_cert.display())), "{err}");
    assert!(!err.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_file_logs_in_and_a_wrong_password_is_refused() {
    let dir = TestDir::new("login");
    let users = dir.path("users");
    let made =
        Command::new("mosquitto_passwd").arg("-b").arg("-c").arg(&users).args(["station", "s3cret"]).status();
    assert!(made.expect("mosquitto_passwd is installed").success());
    let broker = Broker::start_with(
        &dir,
        &format!("allow_anonymous false\npassword_file {}\npersistence false\n", users.display()),
    );

    let password_file = dir.path("mqtt.password");
    std::fs::write(&password_file, "s3cret\n").expect("write password");
    let (mut mqtt, node) = configs(broker.port, "login", &dir);
    mqtt.username = Some("station".into());
    mqtt.password_file = Some(password_file);
    let (publisher, _acks) = MqttPublisher::start(&mqtt, &node, &dir.path("outbox")).expect("starts");
    assert!(connects_within(&publisher, Duration::from_secs(5)).await, "right password");
    publisher.shutdown(Duration::from_secs(2)).await;

    mqtt.password_file = None;
    mqtt.password = Some("wrong".into());
    let (publisher, _acks) = MqttPublisher::start(&mqtt, &node, &dir.path("outbox")).expect("starts");
    assert!(!connects_within(&publisher, Duration::from_millis(800)).await, "wrong password");
    assert!(publisher.stats().connection_errors >= 1);
    publisher.shutdown(Duration::from_millis(100)).await;
}
