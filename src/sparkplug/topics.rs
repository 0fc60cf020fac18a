//! Sparkplug B topics of this edge node: `spBv1.0/{group}/{type}/{edge}[/{device}]`, and what
//! an incoming command topic is addressed to.

/// The Sparkplug B topic namespace (the first level of every topic).
pub const NAMESPACE: &str = "spBv1.0";

/// Topic names for one edge node; the ids were checked by [`check_id`] before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Topics {
    group: String,
    edge: String,
}

/// Who an NCMD or DCMD is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    Node,
    Device(&'a str),
}

impl Topics {
    pub fn new(group: &str, edge: &str) -> Topics {
        Topics { group: group.to_string(), edge: edge.to_string() }
    }

    pub fn nbirth(&self) -> String {
        self.node("NBIRTH")
    }

    pub fn ndeath(&self) -> String {
        self.node("NDEATH")
    }

    pub fn ncmd(&self) -> String {
        self.node("NCMD")
    }

    pub fn dbirth(&self, device: &str) -> String {
        self.device("DBIRTH", device)
    }

    pub fn ddata(&self, device: &str) -> String {
        self.device("DDATA", device)
    }

    pub fn ddeath(&self, device: &str) -> String {
        self.device("DDEATH", device)
    }

    /// Every device's commands; MQTT's `+` matches exactly one topic level, which is what a
    /// device id is.
    pub fn dcmd_filter(&self) -> String {
        self.device("DCMD", "+")
    }

    /// The addressee of a message that arrived on one of our command subscriptions.
    pub fn target_of<'a>(&self, topic: &'a str) -> Option<Target<'a>> {
        let rest = topic.strip_prefix(NAMESPACE)?.strip_prefix('/')?;
        let rest = rest.strip_prefix(self.group.as_str())?.strip_prefix('/')?;
        let (kind, rest) = rest.split_once('/')?;
        let (edge, device) = match rest.split_once('/') {
            Some((edge, device)) => (edge, Some(device)),
            None => (rest, None),
        };
        match (kind, device) {
            _ if edge != self.edge => None,
            ("NCMD", None) => Some(Target::Node),
            ("DCMD", Some(device)) if check_id(device).is_ok() => Some(Target::Device(device)),
            _ => None,
        }
    }

    fn node(&self, kind: &str) -> String {
        format!("{NAMESPACE}/{}/{kind}/{}", self.group, self.edge)
    }

    fn device(&self, kind: &str, device: &str) -> String {
        format!("{NAMESPACE}/{}/{kind}/{}/{device}", self.group, self.edge)
    }
}

/// Whether `id` can be a group, edge node or device id: one topic level, which Sparkplug says
/// must be a non-empty UTF-8 string without the MQTT separators and wildcards.
pub fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        Err("must not be empty")
    } else if id.contains(['/', '+', '#']) {
        Err("must not contain '/', '+' or '#'")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_sparkplug_namespace() {
        let t = Topics::new("line-3", "station-1");
        assert_eq!(t.nbirth(), "spBv1.0/line-3/NBIRTH/station-1");
        assert_eq!(t.ndeath(), "spBv1.0/line-3/NDEATH/station-1");
        assert_eq!(t.ncmd(), "spBv1.0/line-3/NCMD/station-1");
        assert_eq!(t.dbirth("cam1"), "spBv1.0/line-3/DBIRTH/station-1/cam1");
        assert_eq!(t.ddata("cam1"), "spBv1.0/line-3/DDATA/station-1/cam1");
        assert_eq!(t.ddeath("cam1"), "spBv1.0/line-3/DDEATH/station-1/cam1");
        assert_eq!(t.dcmd_filter(), "spBv1.0/line-3/DCMD/station-1/+");
    }

    #[test]
    fn commands_are_matched_to_this_node_only() {
        let t = Topics::new("g", "e");
        assert_eq!(t.target_of("spBv1.0/g/NCMD/e"), Some(Target::Node));
        assert_eq!(t.target_of("spBv1.0/g/DCMD/e/cam1"), Some(Target::Device("cam1")));
        for other in [
            "spBv1.0/g/NCMD/e2",
            "spBv1.0/g2/NCMD/e",
            "spBv1.0/g/DCMD/e",
            "spBv1.0/g/NCMD/e/cam1",
            "spBv1.0/g/DCMD/e/cam1/x",
            "spBv1.0/g/DDATA/e/cam1",
            "spAv1.0/g/NCMD/e",
        ] {
            assert_eq!(t.target_of(other), None, "{other}");
        }
    }

    #[test]
    fn ids_must_be_one_topic_level() {
        assert!(check_id("Line 3 (east)").is_ok(), "spaces and punctuation are fine");
        for bad in ["", "a/b", "a+", "#"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }
}
