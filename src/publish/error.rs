//! Errors of the MQTT publisher. Each names what it is about (topic, file, config key) and says
//! whether retrying can help ([`PublishError::is_transient`]).

use std::io;
use std::path::PathBuf;

use crate::publish::outbox::OutboxError;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A config value or camera id that cannot be a topic level.
    #[error("{what} {value:?} cannot be used in an MQTT topic: {reason}")]
    InvalidTopic { what: &'static str, value: String, reason: &'static str },

    #[error("cannot read the MQTT password file {}: {source}", path.display())]
    PasswordFile { path: PathBuf, source: io::Error },

    /// MQTT 3.1.1 only carries a password together with a user name.
    #[error("mqtt.password (or mqtt.password_file) is set but mqtt.username is not")]
    PasswordWithoutUsername,

    #[error("mqtt.tls.{key} {}: {reason}", path.display())]
    TlsFile { key: &'static str, path: PathBuf, reason: String },

    #[error("mqtt.tls: {0}")]
    Tls(String),

    #[error("mqtt.{key}: {reason}")]
    Config { key: &'static str, reason: String },

    #[error("cannot encode the payload for {topic}: {source}")]
    Encode { topic: String, source: serde_json::Error },

    /// Larger than the packet size the client is set up for; the broker would drop the
    /// connection, so the message is refused up front.
    #[error("payload for {topic} is {bytes} bytes, more than the {max}-byte MQTT packet limit")]
    PayloadTooLarge { topic: String, bytes: usize, max: usize },

    #[error("alarm outbox: {0}")]
    Outbox(#[from] OutboxError),

    #[error("the MQTT publisher must be started within a Tokio runtime")]
    NoRuntime,

    /// The publisher's tasks are gone (shut down or crashed).
    #[error("the MQTT publisher has stopped")]
    Stopped,
}

impl PublishError {
    /// The config key a configuration error is about (`mqtt.keep_alive_s`), if it is one.
    pub fn config_key(&self) -> Option<String> {
        match self {
            PublishError::InvalidTopic { what, .. } if what.contains('.') => Some(what.to_string()),
            PublishError::PasswordFile { .. } => Some("mqtt.password_file".into()),
            PublishError::PasswordWithoutUsername => Some("mqtt.password".into()),
            PublishError::TlsFile { key, .. } => Some(format!("mqtt.tls.{key}")),
            PublishError::Tls(_) => Some("mqtt.tls".into()),
            PublishError::Config { key, .. } => Some(format!("mqtt.{key}")),
            _ => None,
        }
    }

    /// True when the same call may succeed later (the outbox drains or the disk recovers);
    /// false for configuration and programming errors, which need a fix.
    pub fn is_transient(&self) -> bool {
        match self {
            PublishError::Outbox(e) => e.is_transient(),
            PublishError::InvalidTopic { .. }
            | PublishError::PasswordFile { .. }
            | PublishError::PasswordWithoutUsername
            | PublishError::TlsFile { .. }
            | PublishError::Tls(_)
            | PublishError::Config { .. }
            | PublishError::Encode { .. }
            | PublishError::PayloadTooLarge { .. }
            | PublishError::NoRuntime
            | PublishError::Stopped => false,
        }
    }
}
