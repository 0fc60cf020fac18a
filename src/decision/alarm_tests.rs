use super::*;
use std::time::{Duration, UNIX_EPOCH};

use crate::util::rng::SplitMix64;

const T0_MS: u64 = 1_795_878_248_000;

fn config(k: usize, n: usize, clear_after: usize, latch: bool) -> AlarmConfig {
    AlarmConfig { k, n, clear_after, latch }
}

fn machine(k: usize, n: usize, clear_after: usize, latch: bool) -> AlarmMachine {
    AlarmMachine::new("cam", config(k, n, clear_after, latch)).expect("valid config")
}

/// Frame `seq` is captured at `T0 + seq · 100 ms`; NG frames score 2, OK frames 0.5.
fn frame(seq: u64, ng: bool) -> Observation {
    Observation {
        seq,
        verdict: if ng { Verdict::Ng } else { Verdict::Ok },
        score: if ng { 2.0 } else { 0.5 },
        threshold: 1.0,
        at: UNIX_EPOCH + Duration::from_millis(T0_MS + 100 * seq),
    }
}

/// Feeds `pattern` (`X` = NG, `.` = OK) with seq continuing from `first_seq`; returns the
/// events as `(seq, kind)`.
fn feed_from(m: &mut AlarmMachine, first_seq: u64, pattern: &str) -> Vec<(u64, AlarmKind)> {
    let mut events = Vec::new();
    for (i, c) in pattern.chars().enumerate() {
        let seq = first_seq + i as u64;
        if let Some(e) = m.observe(frame(seq, c == 'X')) {
            events.push((e.seq, e.kind));
        }
    }
    events
}

fn feed(m: &mut AlarmMachine, pattern: &str) -> Vec<(u64, AlarmKind)> {
    feed_from(m, 0, pattern)
}

fn ack_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(T0_MS + 1_000_000)
}

use AlarmKind::{Cleared, Raised};

#[test]
fn k_of_n_window_edges() {
    // (k, n, verdicts, seq of the raise or None)
    let cases: &[(usize, usize, &str, Option<u64>)] = &[
        (3, 5, "XX...XX...XX", None),       // never more than k-1 NG in any 5 frames
        (3, 5, "X.X.X", Some(4)),           // k NG spread exactly across n frames
        (3, 5, "X..X.X", None),             // the first NG fell out of the window just in time
        (3, 5, "X..X.XX", Some(6)),         // ... and a later one completes the window again
        (2, 5, "X...X", Some(4)),           // first and last frame of the window
        (2, 5, "X....X", None),             // one frame too far apart
        (1, 1, "...X", Some(3)),            // k = n = 1: the first NG raises
        (4, 4, "XXX.XXX.XXXX", Some(11)),   // k = n: only n consecutive NG raise
        (3, 8, "X.X......X.X.X", Some(13)), // wide window, NGs leaving and arriving
    ];
    for &(k, n, pattern, raise) in cases {
        let events = feed(&mut machine(k, n, 100, false), pattern);
        let expected: Vec<_> = raise.map(|s| (s, Raised)).into_iter().collect();
        assert_eq!(events, expected, "k={k} n={n} {pattern}");
    }
}

#[test]
fn an_alarm_is_raised_once_however_long_the_ng_run() {
    let events = feed(&mut machine(2, 3, 3, false), &"X".repeat(50));
    assert_eq!(events, vec![(1, Raised)]);
}

#[test]
fn ok_frames_alone_never_clear_or_raise_anything() {
    assert!(feed(&mut machine(1, 1, 1, false), &".".repeat(20)).is_empty());
}

#[test]
fn clears_after_clear_after_consecutive_ok_frames() {
    let events = feed(&mut machine(1, 1, 3, false), "X.....");
    assert_eq!(events, vec![(0, Raised), (3, Cleared)]);
}

#[test]
fn an_ng_frame_in_the_ok_run_restarts_the_count() {
    // Raised at 0; OK 1-2, NG 3 (no second raise), OK 4-6 clear at the third.
    let events = feed(&mut machine(1, 1, 3, false), "X..X...");
    assert_eq!(events, vec![(0, Raised), (6, Cleared)]);
}

#[test]
fn after_a_clear_a_new_alarm_needs_k_fresh_ng_frames() {
    // k=2 of n=5, clear after 1 OK: the NGs at 0-1 must not count again after the clear at 2.
    let mut m = machine(2, 5, 1, false);
    let events = feed(&mut m, "XX.X.XX");
    assert_eq!(events, vec![(1, Raised), (2, Cleared), (5, Raised)]);
}

#[test]
fn events_carry_the_raising_and_clearing_frames_and_a_stable_id() {
    let mut m = machine(1, 1, 1, false);
    let raised = m.observe(frame(7, true)).expect("raises");
    let cleared = m.observe(frame(8, false)).expect("clears");
    assert_eq!(raised.alarm_id, format!("cam-{}-7", T0_MS + 700));
    assert_eq!(cleared.alarm_id, raised.alarm_id);
    assert_eq!((raised.seq, raised.score, raised.threshold), (7, 2.0, 1.0));
    assert_eq!((cleared.seq, cleared.score), (8, 0.5));
    assert_eq!(cleared.started_at, raised.at);
    assert_eq!(cleared.at, frame(8, false).at);
    // A restarted daemon seeing the same frame names the alarm the same way.
    let again = machine(1, 1, 1, false).observe(frame(7, true)).expect("raises");
    assert_eq!(again.alarm_id, raised.alarm_id);
}

#[test]
fn latched_alarm_stays_after_the_ok_run_until_acknowledged() {
    let mut m = machine(1, 1, 2, true);
    assert_eq!(feed(&mut m, "X......."), vec![(0, Raised)]);
    let state = m.state();
    assert!(state.active && state.latched && !state.acknowledged, "{state:?}");
    match m.acknowledge(&AckTarget::Current, ack_time()) {
        AckOutcome::Cleared(e) => {
            assert_eq!((e.kind, e.seq, e.at), (Cleared, 7, ack_time()));
            assert_eq!(e.started_at, frame(0, true).at);
        }
        other => panic!("expected an immediate clear, got {other:?}"),
    }
    assert_eq!(m.state(), AlarmState::default());
}

#[test]
fn ack_while_still_ng_clears_once_the_ok_run_completes() {
    let mut m = machine(1, 1, 2, true);
    feed(&mut m, "XX");
    assert_eq!(m.acknowledge(&AckTarget::Current, ack_time()), AckOutcome::Acknowledged);
    let state = m.state();
    assert!(state.active && state.acknowledged && !state.latched, "{state:?}");
    // The NG at 3 restarts the OK run, so the acknowledged alarm clears at 5, not 3.
    assert_eq!(feed_from(&mut m, 2, ".X.."), vec![(5, Cleared)]);
}

#[test]
fn a_second_ack_changes_nothing() {
    let mut m = machine(1, 1, 2, true);
    feed(&mut m, "X");
    assert_eq!(m.acknowledge(&AckTarget::Current, ack_time()), AckOutcome::Acknowledged);
    assert_eq!(m.acknowledge(&AckTarget::Current, ack_time()), AckOutcome::AlreadyAcknowledged);
}

#[test]
fn ack_for_another_alarm_id_is_ignored() {
    let mut m = machine(1, 1, 1, true);
    feed(&mut m, "X..");
    let id = m.state().alarm_id.expect("active");
    assert_eq!(m.acknowledge(&AckTarget::parse("cam-1-0"), ack_time()), AckOutcome::Ignored);
    assert!(m.state().active);
    assert!(matches!(m.acknowledge(&AckTarget::parse(&id), ack_time()), AckOutcome::Cleared(_)));
}

#[test]
fn ack_without_an_active_alarm_is_ignored_and_not_remembered() {
    let mut m = machine(1, 1, 1, true);
    assert_eq!(m.acknowledge(&AckTarget::Current, ack_time()), AckOutcome::Ignored);
    // The next alarm still needs its own acknowledgement.
    feed(&mut m, "X...");
    assert!(m.state().latched);
}

#[test]
fn without_latch_an_ack_is_recorded_but_clearing_follows_the_frames() {
    let mut m = machine(1, 1, 2, false);
    feed(&mut m, "X");
    assert_eq!(m.acknowledge(&AckTarget::Current, ack_time()), AckOutcome::Acknowledged);
    assert!(m.state().acknowledged);
    assert_eq!(feed_from(&mut m, 1, "..."), vec![(2, Cleared)]);
    assert!(!m.state().active);
}

#[test]
fn ack_payload_parsing() {
    assert_eq!(AckTarget::parse(" current\n"), AckTarget::Current);
    assert_eq!(AckTarget::parse("cam-5-9"), AckTarget::Id("cam-5-9".into()));
}

#[test]
fn invalid_configs_are_rejected_naming_every_bad_key() {
    let keys = |c: AlarmConfig| -> Vec<&'static str> {
        validate(&c).err().unwrap_or_default().iter().map(|p| p.key).collect()
    };
    assert_eq!(keys(config(0, 5, 5, false)), vec!["alarm.k"]);
    assert_eq!(keys(config(6, 5, 5, false)), vec!["alarm.k"]);
    assert_eq!(keys(config(3, 5, 0, false)), vec!["alarm.clear_after"]);
    assert_eq!(keys(config(0, 0, 0, false)), vec!["alarm.k", "alarm.n", "alarm.clear_after"]);
    assert!(validate(&AlarmConfig::default()).is_ok());
    let problems = AlarmMachine::new("cam", config(6, 5, 5, false)).expect_err("rejected");
    assert_eq!(problems[0].to_string(), "alarm.k: 6 NG frames can never fit in a window of n = 5");
}

/// An input to the property test.
#[derive(Debug, Clone, Copy)]
enum Step {
    Frame(bool),
    AckCurrent,
    AckRight,
    AckWrong,
}

/// What the reference model says the machine looks like after a step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct RefState {
    active: bool,
    raised_seq: Option<u64>,
    acknowledged: bool,
    latched: bool,
}

/// The alarm rules restated over the whole history at every step, with no counters:
/// raise when the frames since the last clear, limited to the last `n`, hold `k` NG; the
/// clear condition is "the last `clear_after` frames are all OK".
fn reference(c: AlarmConfig, steps: &[Step]) -> (Vec<(usize, AlarmKind, u64)>, Vec<RefState>) {
    let mut history: Vec<bool> = Vec::new();
    let (mut events, mut states) = (Vec::new(), Vec::new());
    let mut since_clear = 0usize;
    let mut s = RefState::default();
    let ok_tail = |h: &[bool]| h.len() >= c.clear_after && h[h.len() - c.clear_after..].iter().all(|ng| !ng);
    for (i, step) in steps.iter().enumerate() {
        let seq = history.len() as u64;
        let acked_now = !matches!(step, Step::Frame(_) | Step::AckWrong) && s.active;
        if let Step::Frame(ng) = *step {
            history.push(ng);
            let from = since_clear.max(history.len().saturating_sub(c.n));
            if !s.active && history[from..].iter().filter(|ng| **ng).count() >= c.k {
                s = RefState { active: true, raised_seq: Some(seq), ..RefState::default() };
                events.push((i, Raised, seq));
            }
        }
        s.acknowledged |= acked_now;
        let clear = s.active && ok_tail(&history) && (!c.latch || s.acknowledged);
        if clear {
            events.push((i, Cleared, history.len() as u64 - 1));
            s = RefState::default();
            since_clear = history.len();
        }
        s.latched = s.active && ok_tail(&history);
        states.push(s);
    }
    (events, states)
}

fn random_steps(rng: &mut SplitMix64, len: usize) -> Vec<Step> {
    let ng_percent = 5 + rng.below(60);
    (0..len)
        .map(|_| match rng.below(100) {
            0..=2 => Step::AckCurrent,
            3..=5 => Step::AckRight,
            6 => Step::AckWrong,
            r => Step::Frame(r % 100 < 7 + ng_percent),
        })
        .collect()
}

fn run_machine(c: AlarmConfig, steps: &[Step]) -> (Vec<(usize, AlarmKind, u64)>, Vec<RefState>) {
    let mut m = AlarmMachine::new("cam", c).expect("valid config");
    let (mut events, mut states) = (Vec::new(), Vec::new());
    let mut seq = 0;
    for (i, step) in steps.iter().enumerate() {
        let event = match step {
            Step::Frame(ng) => {
                seq += 1;
                m.observe(frame(seq - 1, *ng))
            }
            Step::AckCurrent => ack_event(m.acknowledge(&AckTarget::Current, ack_time())),
            Step::AckRight => {
                let id = m.state().alarm_id.unwrap_or_else(|| "cam-0-0".into());
                ack_event(m.acknowledge(&AckTarget::Id(id), ack_time()))
            }
            Step::AckWrong => ack_event(m.acknowledge(&AckTarget::parse("cam-1-1"), ack_time())),
        };
        events.extend(event.map(|e| (i, e.kind, e.seq)));
        let st = m.state();
        let raised_seq = st.alarm_id.as_ref().map(|id| id.rsplit('-').next().unwrap().parse().unwrap());
        states.push(RefState {
            active: st.active,
            raised_seq,
            acknowledged: st.acknowledged,
            latched: st.latched,
        });
    }
    (events, states)
}

fn ack_event(outcome: AckOutcome) -> Option<AlarmEvent> {
    match outcome {
        AckOutcome::Cleared(e) => Some(e),
        _ => None,
    }
}

#[test]
fn matches_a_reference_that_recomputes_from_the_full_history() {
    let mut rng = SplitMix64::new(0x1a2b_3c4d);
    let mut raised_total = 0;
    for case in 0..400 {
        let n = 1 + rng.below(8);
        let c = config(1 + rng.below(n), n, 1 + rng.below(6), rng.below(2) == 0);
        let steps = random_steps(&mut rng, 200);
        let (expected_events, expected_states) = reference(c, &steps);
        let (events, states) = run_machine(c, &steps);
        assert_eq!(events, expected_events, "case {case}: {c:?}\n{steps:?}");
        assert_eq!(states, expected_states, "case {case}: {c:?}\n{steps:?}");
        raised_total += events.iter().filter(|e| e.1 == Raised).count();
    }
    // The generator must actually exercise raises and clears, or the test proves nothing.
    assert!(raised_total > 1000, "only {raised_total} raises");
}
