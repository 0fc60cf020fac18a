//! The two counters of a Sparkplug edge node. Both live in 0..=255 and wrap to 0.
//!
//! - [`Seq`], the message sequence number: 0 in NBIRTH, then one more for each DBIRTH, DDATA
//!   and DDEATH of the node, so a host can tell a lost message (a gap) and ask for a rebirth.
//! - [`BdSeq`], the birth/death sequence number: one value per MQTT connection, carried by the
//!   NDEATH will registered with CONNECT and by the NBIRTH that follows, so a host can tell
//!   whether a (possibly late) NDEATH belongs to the session it knows.

/// The message sequence number of one edge node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Seq {
    next: u8,
}

impl Seq {
    /// The NBIRTH's number, 0; the messages after it count on from there.
    pub fn restart(&mut self) -> u64 {
        self.next = 0;
        self.take()
    }

    /// The number of the next DBIRTH, DDATA or DDEATH.
    pub fn take(&mut self) -> u64 {
        let seq = self.next;
        self.next = seq.wrapping_add(1);
        u64::from(seq)
    }
}

/// The birth/death sequence number of a connection. It starts at 0 when the process starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BdSeq(u8);

impl BdSeq {
    /// The value for the connection after this one.
    pub fn next(self) -> BdSeq {
        BdSeq(self.0.wrapping_add(1))
    }

    pub fn value(self) -> u8 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_starts_at_zero_with_each_birth_and_wraps_after_255() {
        let mut seq = Seq::default();
        assert_eq!(seq.restart(), 0);
        let later: Vec<u64> = (0..256).map(|_| seq.take()).collect();
        assert_eq!(later[0], 1);
        assert_eq!(later[254], 255);
        assert_eq!(later[255], 0, "255 is followed by 0");
        assert_eq!(seq.take(), 1);
        assert_eq!(seq.restart(), 0, "a rebirth starts over");
        assert_eq!(seq.take(), 1);
    }

    #[test]
    fn bdseq_counts_connections_and_wraps_after_255() {
        let first = BdSeq::default();
        assert_eq!(first.value(), 0);
        assert_eq!(first.next().value(), 1);
        let last = (0..255).fold(first, |b, _| b.next());
        assert_eq!(last.value(), 255);
        assert_eq!(last.next().value(), 0);
    }
}
