//! Broker user name and password. The password comes from `mqtt.password_file` or
//! `mqtt.password` (which `INSPECTD__MQTT__PASSWORD` fills through config layering) and is
//! never logged: its `Debug` prints a placeholder.

use std::fmt;
use std::fs;
use std::path::Path;

use crate::config::MqttConfig;
use crate::publish::error::PublishError;

/// A password that does not show up in logs or panic messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The plain value, for the CONNECT packet only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What goes into the CONNECT packet's login fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    /// Empty when the broker only wants a user name.
    pub password: Secret,
}

impl Credentials {
    /// Reads the credentials the config asks for; `None` for an anonymous connection. The
    /// password file wins over an inline password, because a file is what a deployment
    /// with secrets management sets up on purpose.
    pub fn from_config(cfg: &MqttConfig) -> Result<Option<Credentials>, PublishError> {
        let password = match (&cfg.password_file, &cfg.password) {
            (Some(path), _) => Some(read_password_file(path)?),
            (None, Some(inline)) => Some(Secret::new(inline.clone())),
            (None, None) => None,
        };
        match (&cfg.username, password) {
            (Some(username), password) => Ok(Some(Credentials {
                username: username.clone(),
                password: password.unwrap_or_else(|| Secret::new("")),
            })),
            (None, Some(_)) => Err(PublishError::PasswordWithoutUsername),
            (None, None) => Ok(None),
        }
    }
}

/// The whole file is the password, except a trailing line break that editors and
/// `echo` add.
fn read_password_file(path: &Path) -> Result<Secret, PublishError> {
    let text = fs::read_to_string(path)
        .map_err(|source| PublishError::PasswordFile { path: path.to_path_buf(), source })?;
    let password = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    Ok(Secret::new(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MqttConfig {
        MqttConfig { username: Some("station".into()), ..MqttConfig::default() }
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let creds = Credentials { username: "u".into(), password: Secret::new("hunter2") };
        let shown = format!("{creds:?} {:?}", creds.password);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn the_password_file_wins_and_loses_its_trailing_newline() {
        let path = std::env::temp_dir().join(format!("inspectd-mqtt-pw-{}", std::process::id()));
        fs::write(&path, "s3cret with spaces \r\n").expect("write");
        let cfg =
            MqttConfig { password_file: Some(path.clone()), password: Some("inline".into()), ..config() };
        let creds = Credentials::from_config(&cfg).expect("reads").expect("login");
        assert_eq!(creds.password.expose(), "s3cret with spaces ");
        fs::remove_file(&path).expect("cleanup");
    }

    #[test]
    fn a_missing_password_file_is_named_in_the_error() {
        let cfg = MqttConfig { password_file: Some("/nonexistent/mqtt.pw".into()), ..config() };
        let err = Credentials::from_config(&cfg).expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/mqtt.pw"), "{err}");
    }

    #[test]
    fn a_password_needs_a_user_name() {
        let cfg = MqttConfig { password: Some("x".into()), ..MqttConfig::default() };
        assert!(matches!(Credentials::from_config(&cfg), Err(PublishError::PasswordWithoutUsername)));
        assert_eq!(Credentials::from_config(&MqttConfig::default()).expect("anonymous"), None);
    }
}
